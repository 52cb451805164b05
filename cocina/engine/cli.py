"""`cocina kernels build` and `cocina kernels info`: cocina's CPU kernels, compiled at install time.

`scripts/install.sh` runs `cocina kernels build` once cocina is installed, so a server's first request never
waits for a compiler; deploy images should run it after their `pip install` too. Without a C compiler it warns
and exits 0: the engine then runs PyTorch's ops (slower), and a later `cocina kernels build` fixes that.
"""

from __future__ import annotations

import sys

import typer

kernels_app = typer.Typer(help="cocina's CPU kernels: build them, or see which one this machine runs.",
                          no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(kernels_app, name="kernels")


@kernels_app.command("build")
def build(
    variant: list[str] | None = typer.Option(
        None, "--variant", help="Only these variants (repeatable); default: every one this CPU runs."
    ),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 when a variant cannot be built."),
) -> None:
    """Compile the kernel variants this CPU can run (cached; a second run only checks)."""
    from cocina.engine import cpu_kernels as ck

    names = variant or ck.runnable_variants()
    unknown = [n for n in names if n not in ck.VARIANTS]
    if unknown:
        print(f"error: unknown variant(s) {', '.join(unknown)}; valid: {', '.join(ck.VARIANTS)}", file=sys.stderr)
        raise typer.Exit(2)
    if not names:
        print("cocina kernels: this CPU runs none of cocina's kernel variants (they need x86-64 with AVX2 or "
              "AVX-512); the engine uses PyTorch's ops", file=sys.stderr)
        return
    failed = False
    for name, result in ck.build_kernels(names).items():
        if result.endswith(".so"):
            print(f"cocina kernels: {name}: {result}")
        else:
            failed = True
            print(f"warning: cocina kernels: {name} not built: {result}", file=sys.stderr)
    if failed:
        print("warning: without cocina's kernels the engine runs PyTorch's ops (several times slower); install a C "
              "compiler (gcc) and run `cocina kernels build` again", file=sys.stderr)
        if strict:
            raise typer.Exit(1)


@kernels_app.command("info")
def info() -> None:
    """The CPU's relevant flags, the variants it runs and the one the engine would pick."""
    from cocina.engine import cpu_kernels as ck

    flags = ck.cpu_flags()
    wanted = sorted({f for v in ck.VARIANTS.values() for f in v.needs})
    print("cpu flags: " + " ".join(f if f in flags else f"-{f}" for f in wanted))
    print("runnable variants: " + (", ".join(ck.runnable_variants()) or "none"))
    try:
        chosen = ck.choose_variant()
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        raise typer.Exit(2) from None
    print(f"chosen (COCINA_CPU_KERNELS or auto): {chosen}")
    if chosen != "torch":
        lib = ck.load_variant(chosen)
        print(f"build: {lib.path if lib is not None else 'not available (see the warning above)'}")
