"""The OpenAI Realtime server: a sans-I/O protocol core and a thin FastAPI/WebSocket adapter.

protocol/    the session state machine and its event models (no I/O)
audio.py     wire formats, G.711, streaming resampling
vad.py       server_vad turn detection on webrtcvad
connection.py, app.py, auth.py, metrics.py, logs.py, settings.py, cli.py   the I/O around it
startup.py   what every session needs, loaded or checked before the first one
"""
