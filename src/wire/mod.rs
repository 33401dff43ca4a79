//! Zero-copy views over captured frames, one file per layer, in the style of
//! smoltcp's `wire` module: a checked constructor, then accessors that cannot
//! panic. (Written by the decoder work, issue 3.)
