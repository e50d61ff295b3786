"""Turn-taking: when the user's turn starts and ends, free of I/O.

`machine.TurnTaking` reads the user's audio (16 kHz int16 on the session's audio clock) and says
when speech starts, when a pause is worth a speculative start, when the turn is complete
(`server_vad`: after a fixed silence; `semantic_vad`: when the end-of-turn model says the
utterance is complete) and when the input has been idle too long. It composes a frame classifier
(`vad`: webrtcvad or Silero) and asks an end-of-turn model (`end_of_turn`: Smart Turn) through
its caller, which runs that model off the event loop. See docs/ARCHITECTURE.md.
"""
