"""The runtime: an `Executable`'s file, the driver and its transports, the targets that run
it (golden model, board) and the report of cycles and energy. Needs NumPy and golden only:
neither the compiler nor Amaranth."""
