"""What every benchmark shares: process launchers, the echo server, load generators, CPU meters."""
