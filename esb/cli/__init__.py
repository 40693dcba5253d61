"""The `esb` command line: thin commands that parse, call one engine function and render."""
