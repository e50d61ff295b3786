"""The pieces of a reply that `streaming.pipeline.ModelResponder` puts together, in the order a
request goes through them:

    audio.py      the user's audio encoded, cached per conversation item and 25 s chunk
    prompt.py     the conversation as a prompt, its oldest exchanges left out where it must
    listening.py  listening ahead: a turn still being spoken, prefilled for the reply to fork
    (streaming.scheduler runs the reasoning and answer branches on the engine)
    stream.py     the scheduler's deltas, tool calls and speech merged into one event stream
    transcription.py  the served model's transcription of a user turn
"""
