"""cocotb testbenches and Verilator runner helpers. Imports rtl/, golden/ (and later firmware/)."""
