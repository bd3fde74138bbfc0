"""`python -m trainlab.recorder`: the recorder process (recorder/server.py)."""

from trainlab.recorder.server import main

main()
