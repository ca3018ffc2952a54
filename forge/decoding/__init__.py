"""Token-level helpers shared by trainers and teachers (one floor below both): completions for
left-padded prompts, position ids, and the score request a trainer sends a teacher backend."""
