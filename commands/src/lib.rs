//! `tape-commands`: the pure decision core.
