"""A stand-in for a transformers tokenizer, enough for slm_recipes.data: special tokens are matched whole,
every other character is one token. Chat templates render with jinja2, as transformers does."""

SPECIAL = ["<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>"]
# The tiny-arith fixture's template (test/fixtures/tiny-arith/hf/tokenizer_config.json).
TINY_ARITH_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}<|user|>{{ m['content'] }}"
    "{% elif m['role'] == 'assistant' %}<|assistant|>{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}")


class FakeTokenizer:
    bos_token, eos_token = "<s>", "</s>"
    bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

    def __init__(self, chat_template=TINY_ARITH_TEMPLATE):
        self.chat_template = chat_template

    def encode(self, text, add_special_tokens=True):
        ids = [self.bos_token_id] if add_special_tokens else []
        i = 0
        while i < len(text):
            for n, s in enumerate(SPECIAL):
                if text.startswith(s, i):
                    ids.append(n)
                    i += len(s)
                    break
            else:
                ids.append(100 + ord(text[i]))
                i += 1
        return ids

    def decode(self, ids):
        return "".join(SPECIAL[t] if t < len(SPECIAL) else chr(t - 100) for t in ids)

    def apply_chat_template(self, messages, chat_template=None, tokenize=False, add_generation_prompt=False):
        import jinja2  # what transformers renders chat templates with

        assert tokenize is False
        template = jinja2.Environment().from_string(chat_template or self.chat_template)
        return template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                               bos_token=self.bos_token, eos_token=self.eos_token)
