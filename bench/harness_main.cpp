// Minimal Verilator harness: loads one program over AXI4-Lite and runs it with no Python.
// Prints "cycles=<device cycles> wall_s=<seconds>". Verilator mangles "__" in port
// names to "___05F".
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include "Vaccelerator.h"
#include "verilated.h"

static Vaccelerator* top;
static uint64_t ticks = 0;

static void tick() {
    top->clk = 0; top->eval();
    top->clk = 1; top->eval();
    ticks++;
}

static void axi_write(uint32_t addr, uint32_t data) {
    top->axi___05Fawaddr = addr; top->axi___05Fawvalid = 1;
    top->axi___05Fwdata = data; top->axi___05Fwstrb = 0xF; top->axi___05Fwvalid = 1;
    top->axi___05Fbready = 1;
    top->clk = 0; top->eval();
    while (!(top->axi___05Fawready && top->axi___05Fwready)) { tick(); top->clk = 0; top->eval(); }
    tick();
    top->axi___05Fawvalid = 0; top->axi___05Fwvalid = 0;
    top->clk = 0; top->eval();
    while (!top->axi___05Fbvalid) { tick(); top->clk = 0; top->eval(); }
    if (top->axi___05Fbresp != 0) { std::fprintf(stderr, "SLVERR at 0x%x\n", addr); std::exit(2); }
    tick();
}

int main(int argc, char** argv) {
    Verilated::commandArgs(argc, argv);
    top = new Vaccelerator;
    // argv: imem base, then the program's words in hex
    if (argc < 3) { std::fprintf(stderr, "usage: harness IMEM_BASE WORD...\n"); return 2; }
    uint32_t imem = std::strtoul(argv[1], nullptr, 0);
    top->rst = 1; for (int i = 0; i < 5; i++) tick(); top->rst = 0; tick();
    for (int i = 2; i < argc; i++) {
        int n = i - 2;   // word n of instruction n / 4, entries 16 bytes apart
        axi_write(imem + (n / 4) * 16 + (n % 4) * 4, std::strtoul(argv[i], nullptr, 16));
    }
    axi_write(0x80, 1);  // CONTROL.start
    uint64_t start = ticks;
    auto t0 = std::chrono::steady_clock::now();
    while (!top->done) tick();
    auto t1 = std::chrono::steady_clock::now();
    std::printf("cycles=%llu wall_s=%.6f\n", (unsigned long long)(ticks - start),
                std::chrono::duration<double>(t1 - t0).count());
    delete top;
    return 0;
}
