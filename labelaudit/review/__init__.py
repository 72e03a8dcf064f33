"""The review step: a stratified draw over an audit's score for a person to verify, and the
estimates the answers support (the dataset's and each class's noise rate, the flags' precision)."""
