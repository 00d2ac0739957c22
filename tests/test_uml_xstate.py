"""The UML kernel keeps its guests' FP/AVX registers, on every host.

UML restores a guest thread's FP registers through ``PTRACE_SETREGSET(NT_X86_XSTATE)``;
on hosts whose XSTATE is larger than UML's buffer (AMX) stock 6.1 panics at init, and
``uml-xstate-host-size.patch`` restores through a buffer of the host's size instead.
These tests boot the kernel and run two guest processes that hold different values in
the vector registers across thousands of context switches (every guest system call
saves and restores them through ptrace), once on the path this host takes and once with
the bounce path forced (``xstate_bounce``), so the patched path is proven on machines
without AMX too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from openamp.tools.uml import ARGS_ENV, UmlGuest, UmlResult

pytestmark = [pytest.mark.uml, pytest.mark.timeout(600)]

ROUNDS = 5000
BOUNCE_LINE = "XSTATE: host"

PROGRAM = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOAD(n) "vmovdqu " #n "*32(%[in]), %%ymm" #n "\n"
#define STORE(n) "vmovdqu %%ymm" #n ", " #n "*32(%[out])\n"
#define ALL(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) \
               M(8) M(9) M(10) M(11) M(12) M(13) M(14) M(15)

/* Load ymm0-15, make `rounds` sched_yield system calls without touching them, store
   them: every call is a switch into the UML kernel and back, often to the other
   process, and each return restores this thread's registers through ptrace. */
static void hold_ymm(const uint8_t *in, uint8_t *out, long rounds)
{
    __asm__ volatile(
        ALL(LOAD)
        "1:\n"
        "mov $24, %%eax\n"  /* __NR_sched_yield */
        "syscall\n"
        "dec %[n]\n"
        "jnz 1b\n"
        ALL(STORE)
        : [n] "+r"(rounds)
        : [in] "r"(in), [out] "r"(out)
        : "rax", "rcx", "r11", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5",
          "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14",
          "xmm15");
}

#define ZLOAD(n) "vmovdqu64 " #n "*64(%[in]), %%zmm" #n "\n"
#define ZSTORE(n) "vmovdqu64 %%zmm" #n ", " #n "*64(%[out])\n"
#define ZALL(M) ALL(M) M(16) M(17) M(18) M(19) M(20) M(21) M(22) M(23) \
                M(24) M(25) M(26) M(27) M(28) M(29) M(30) M(31)

__attribute__((target("avx512f")))
static void hold_zmm(const uint8_t *in, uint8_t *out, long rounds)
{
    __asm__ volatile(
        ZALL(ZLOAD)
        "1:\n"
        "mov $24, %%eax\n"
        "syscall\n"
        "dec %[n]\n"
        "jnz 1b\n"
        ZALL(ZSTORE)
        : [n] "+r"(rounds)
        : [in] "r"(in), [out] "r"(out)
        : "rax", "rcx", "r11", "memory");
}

static int check(const char *what, const uint8_t *in, const uint8_t *out, int regs, int width)
{
    for (int r = 0; r < regs; r++) {
        if (memcmp(in + r * width, out + r * width, width) != 0) {
            printf("CORRUPTED %s%d\n", what, r);
            return 1;
        }
    }
    printf("ok %s0-%d\n", what, regs - 1);
    return 0;
}

int main(int argc, char **argv)
{
    unsigned seed = (unsigned)strtoul(argv[1], NULL, 0);
    long rounds = strtol(argv[2], NULL, 0);
    static uint8_t in[32 * 64] __attribute__((aligned(64)));
    static uint8_t out[32 * 64] __attribute__((aligned(64)));
    for (unsigned i = 0; i < sizeof in; i++)
        in[i] = (uint8_t)(seed * 131u + i * 7u + (i >> 5));
    int bad = 0;
    hold_ymm(in, out, rounds);
    bad |= check("ymm", in, out, 16, 32);
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        memset(out, 0, sizeof out);
        hold_zmm(in, out, rounds);
        bad |= check("zmm", in, out, 32, 64);
    }
    return bad;
}
"""


@pytest.fixture(scope="module")
def avx_program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test program, compiled on the host (the guest's root file system is the host's)."""
    gcc = shutil.which("gcc")
    assert gcc, "gcc is needed to build the AVX test program (it builds the kernel too)"
    folder = tmp_path_factory.mktemp("xstate")
    src = folder / "hold_avx.c"
    src.write_text(PROGRAM)
    exe = folder / "hold_avx"
    subprocess.run([gcc, "-O2", "-mavx", "-o", str(exe), str(src)], check=True)
    return exe


def bounce_expected() -> bool:
    """The bounce path runs on AMX hosts, and everywhere when forced for every boot."""
    forced = "xstate_bounce" in os.environ.get(ARGS_ENV, "").split()
    return forced or "amx_tile" in Path("/proc/cpuinfo").read_text().split()


def run_two(kernel: Path, program: Path, extra_args: list[str]) -> UmlResult:
    script = (
        f"{program} 1 {ROUNDS} > {program}.a 2>&1 & a=$!\n"
        f"{program} 2 {ROUNDS} > {program}.b 2>&1 & b=$!\n"
        "wait $a; ra=$?; wait $b; rb=$?\n"
        f"cat {program}.a {program}.b\n"
        'test "$ra" = 0 && test "$rb" = 0\n'
    )
    with UmlGuest(kernel, {}, script, timeout=300.0, extra_args=extra_args) as guest:
        return guest.run()


def test_guest_avx_registers_survive_context_switches(uml_kernel: Path, avx_program: Path) -> None:
    result = run_two(uml_kernel, avx_program, [])
    assert result.ok, result.describe()
    assert result.output.count("ok ymm0-15") == 2, result.output
    # On an AMX host the patch restores through the host-sized buffer; elsewhere the
    # unchanged path runs and the patch stays silent.
    assert (BOUNCE_LINE in result.console) == bounce_expected(), result.console[:3000]


def test_the_bounce_buffer_path_keeps_avx_registers_too(
    uml_kernel: Path, avx_program: Path
) -> None:
    result = run_two(uml_kernel, avx_program, ["xstate_bounce"])
    assert result.ok, result.describe()
    assert result.output.count("ok ymm0-15") == 2, result.output
    line = next(ln for ln in result.console.splitlines() if BOUNCE_LINE in ln)
    assert "restoring through a buffer of" in line, line
