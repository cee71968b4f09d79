"""``python -m bench hops`` only: on the PYTHONPATH of the nodes it starts, this records when
one message passes each point of its way (a socket read or write, a commit, a wake of the
tox thread, a lossy packet out or in) into ``$TOXBRIDGE_HOPS/<pid>.tsv``. Nothing of it is
in the product; without the variable it does nothing."""

import os

if os.environ.get("TOXBRIDGE_HOPS"):
    from bench.hoptrace import install

    install(os.environ["TOXBRIDGE_HOPS"])
