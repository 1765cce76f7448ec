"""The pure core: no I/O, no clock reads, no network. Time is always passed in."""
