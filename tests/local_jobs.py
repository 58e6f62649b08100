"""Running the processes of one local multi-process job in tests."""

import subprocess


def run_processes(commands: list[list[str]], cwd, env: dict, timeout: int = 600) -> list[str]:
    """Starts every command at once (the processes of one job), waits for all, and returns their
    standard outputs; a failure shows that process's standard error."""
    procs = [
        subprocess.Popen(
            c, cwd=cwd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for c in commands
    ]
    outputs = []
    for i, p in enumerate(procs):
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, f"process {i} failed:\n{err[-4000:]}"
        outputs.append(out)
    return outputs
