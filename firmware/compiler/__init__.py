"""The compiler: compression (int8 quantisation, pruning aligned to the crossbar), mapping
onto a config's tiles and memories, code generation, and the `Executable` it writes."""
