"""The parts of ``branchspec demo``, one module each, run in order.

Each module defines ``run(out_dir: Path, ctx: dict, quick: bool) -> Section``:
it trains / analyses on embedded data only (no network, no ../shared), writes
its results and figures under ``out_dir/<section key>/`` and returns the
report section. ``ctx`` carries products between parts (the toy checkpoints
for the Hessian part, the GAN decomposition for the applications part).
``quick`` shrinks every size for the smoke test.
"""

PARTS = ["toy", "hessian", "classifier", "decomposition", "apps"]
