"""Speech the embedded model must decline: sentences that are not arithmetic questions.

They are made from templates with slots ("what is the weather like in {city}"), spoken by
espeak-ng like the questions. Training and evaluation use disjoint templates: the evaluation's
sentences ("what is the capital of france", "how old is anna") never occur in training, and no
training sentence uses a word of a held-out arithmetic carrier (`data.held_out_words`), so that
an unknown word never becomes a cue to decline (the held-out carriers bring unknown words to
real questions). Some sentences hold number words or operator words ("add milk to my shopping
list", "set an alarm for seven") without asking a sum: the cue to answer is a whole question.
"""

from __future__ import annotations

import numpy as np

SLOTS = {
    "city": ("london", "paris", "tokyo", "berlin", "madrid", "chicago", "sydney", "boston"),
    "country": ("france", "spain", "italy", "japan", "canada", "brazil", "germany", "egypt"),
    "animal": ("cats", "dogs", "horses", "rabbits", "birds", "fish", "lions", "bears"),
    "genre": ("jazz", "rock", "classical", "pop", "country", "folk", "reggae", "blues"),
    "name": ("anna", "peter", "maria", "john", "sarah", "david", "emma", "james"),
    "room": ("kitchen", "bedroom", "living room", "hallway", "garage", "bathroom"),
    "food": ("pasta", "rice", "chicken", "soup", "bread", "eggs", "salad", "fish"),
    "item": ("milk", "eggs", "bread", "coffee", "apples", "butter", "cheese", "tea"),
    "day": ("today", "tomorrow", "tonight", "on monday", "on friday", "this weekend"),
    "place": ("bank", "pharmacy", "station", "museum", "library", "supermarket", "park"),
    "thing": ("book", "film", "song", "restaurant", "game", "podcast", "show"),
    "language": ("french", "spanish", "german", "italian", "japanese", "chinese"),
    "word": ("hello", "thanks", "goodbye", "friend", "water", "house", "tree"),
    "device": ("radio", "television", "heater", "fan", "lamp", "oven"),
    "small": ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"),
}

TRAIN_TEMPLATES = (
    "what is the weather like in {city}",
    "what's the weather in {city} {day}",
    "is it going to rain {day}",
    "tell me a joke",
    "tell me a story about {animal}",
    "play some {genre} music",
    "who is the president of {country}",
    "what is your name",
    "what time is it",
    "what time is it in {city}",
    "please call {name}",
    "send a message to {name}",
    "set an alarm for {small} o'clock",
    "set a timer for {small} minutes",
    "remind me to buy {item}",
    "add {item} to my shopping list",
    "translate {word} into {language}",
    "what does {word} mean in {language}",
    "turn on the lights in the {room}",
    "open the door",
    "who are you",
    "what is the meaning of life",
    "where is the nearest {place}",
    "book a table for {small} people",
    "I have {small} {animal}",
    "I like {food}",
    "do you like {genre} music",
    "what should I cook for dinner",
    "give me a recipe for {food}",
    "tell me about {animal}",
    "find a good {thing} for me",
    "good morning",
    "hello there",
    "thanks a lot",
    "hey what's up",
    "nice to meet you",
    "I love {city}",
    "what is the name of this {thing}",
    "who sings this {thing}",
    "read me the news",
    "what is the date {day}",
    "my name is {name}",
    "let's go to the {place}",
    "is the {place} open {day}",
    "take me to the {place}",
    "what's your favourite {thing}",
)
HELD_OUT_TEMPLATES = (
    "what is the capital of {country}",
    "how old is {name}",
    "when does the {place} open",
    "can you recommend a good {thing}",
    "what's the best way to cook {food}",
    "turn off the {device}",
    "who won the game {day}",
    "I would like to order {small} pizzas",
    "how is the weather in {city}",
    "why is the sky blue",
    "where did I put my keys",
    "sing me a song about {animal}",
)


def templates(held_out: bool) -> tuple[str, ...]:
    return HELD_OUT_TEMPLATES if held_out else TRAIN_TEMPLATES


def sentence(held_out: bool, rng: np.random.Generator) -> str:
    """One off-task sentence: a template of the set, its slots filled at random."""
    pool = templates(held_out)
    text = pool[rng.integers(len(pool))]
    for name, values in SLOTS.items():
        while "{" + name + "}" in text:
            text = text.replace("{" + name + "}", values[rng.integers(len(values))], 1)
    return text


def all_train_sentences() -> list[str]:
    """Every training sentence with every slot value (for the tokenizer's corpus and tests)."""
    out = []
    for template in TRAIN_TEMPLATES:
        names = [n for n in SLOTS if "{" + n + "}" in template]
        texts = [template]
        for name in names:
            texts = [t.replace("{" + name + "}", v) for t in texts for v in SLOTS[name]]
        out += texts
    return out
