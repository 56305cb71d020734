"""One of the scripts under torchrun, watched, for tests/test_distributed.py:

    torchrun [torchrun's options] tests/distributed_worker.py REPORT_DIR SCRIPT.py [the script's flags]

Runs the script's main() as ``python SCRIPT.py flags`` would, then writes REPORT_DIR/rank_R.json: every path this
process created, wrote, renamed or removed while main() ran (seen by an audit hook, which sees every file operation
Python makes), and a digest of the final weights and buffers of each network the script handed to
``distributed.wrap`` or ``distributed.broadcast_parameters`` (the networks it trains).
"""
import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.dont_write_bytecode = True  # a module imported late would otherwise write its .pyc: not the script's doing

from common import cli, distributed  # noqa: E402

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def main():
    report_dir, script, argv = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    spec = importlib.util.spec_from_file_location(Path(script).stem, REPO / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    networks = []
    wrap, broadcast = distributed.wrap, distributed.broadcast_parameters

    def watched_wrap(model):
        networks.append(model)
        return wrap(model)

    def watched_broadcast(*models):
        networks.extend(models)
        broadcast(*models)

    distributed.wrap, distributed.broadcast_parameters = watched_wrap, watched_broadcast

    writes, watching = [], [True]

    def audit(event, args):
        if not watching[0]:
            return
        if event == "open" and isinstance(args[2], int) and args[2] & WRITE_FLAGS and args[0] != os.devnull:
            writes.append(str(args[0]))
        elif event in ("os.rename", "os.remove", "os.mkdir", "os.rmdir"):
            writes.append(str(args[0]))

    sys.addaudithook(audit)
    sys.argv = [script, *argv]
    cli.run(module.main)
    watching[0] = False

    digests = {f"{index}.{name}": hashlib.sha256(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()
               for index, network in enumerate(networks) for name, tensor in network.state_dict().items()}
    report = {"rank": distributed.rank(), "world_size": distributed.world_size(), "writes": writes,
              "digests": digests}
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / f"rank_{distributed.rank()}.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
