//! Load generator and micro-benchmarks for Confab (see README).
