"""Helpers shared by the test suites, one copy each; test folders are not packages, so they are
imported as `tests.support.<module>` from the repository root (`python -m pytest`).

- `speech`: espeak-ng speech as the server, the client and the model hear it; append messages.
- `serving`: the server in this process (uvicorn on 127.0.0.1, a free port); reading events.
- `presets`: the models the tests load.
"""
