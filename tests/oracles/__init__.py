"""Pure-Python reference implementations that production no longer calls: the oracles the
tests check the Rust code against (the obviously correct form of each rule)."""
