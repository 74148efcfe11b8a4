"""AWQ on the fixture model tiny-arith (a real trained Llama with grouped-query attention), calibrated on its
addition data rendered with its chat template: folding the scales keeps the float model's function; each scaling
group's output error on held-out calibration windows is lower than round-to-nearest's on the same 4-bit grid
(group size 128, zero point); the scaling groups follow the architecture. CPU, one thread, a few seconds."""
import copy
import json
import os
import sys
import unittest

HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, "..", "..", "recipes"))
FIXTURE = os.path.join(HERE, "..", "fixtures", "tiny-arith")

try:
    import torch
    import transformers
except ImportError:
    torch = transformers = None


def chat_windows(tokenizer, path, n, seq_len):
    """The first n windows of seq_len tokens of the chat JSONL rendered with the model's template."""
    ids = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            text = tokenizer.apply_chat_template(json.loads(line)["messages"], tokenize=False)
            ids += tokenizer.encode(text, add_special_tokens=False)
            if len(ids) >= n * seq_len:
                break
    return torch.tensor(ids[: n * seq_len]).view(n, seq_len)


@unittest.skipIf(torch is None, "torch and transformers are not installed")
class AwqOnTinyArithTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.manual_seed(0)
        hf = os.path.join(FIXTURE, "hf")
        cls.tokenizer = AutoTokenizer.from_pretrained(hf)
        cls.model = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.float32).eval()
        win = chat_windows(cls.tokenizer, os.path.join(FIXTURE, "data", "add-train.jsonl"), 12, 128)
        cls.calibration, cls.held_out = win[:8], win[8:]

    def grid(self):
        from slm_recipes.quant.awq import Grid

        return Grid(bits=4, group_size=128, zero_point=True)

    def test_folding_the_scales_leaves_the_float_model_unchanged(self):
        from slm_recipes.quant.awq import apply_scales, collect_stats

        model = copy.deepcopy(self.model)
        moved = 0.0
        for block in model.model.layers:
            stats = collect_stats(block, "llama", lambda: model(self.calibration))
            done = apply_scales(block, "llama", stats, self.grid())
            moved = max(moved, max(float((s.log()).abs().max()) for s in done.input_scale.values()))
        self.assertGreater(moved, 0.1, "the scales are all 1: the test would not see a wrong fold")
        with torch.no_grad():
            before = self.model(self.held_out).logits
            after = model(self.held_out).logits
        self.assertLess(float((before - after).abs().max()), 1e-3 * float(before.abs().max()))

    def test_each_scaling_group_beats_round_to_nearest_on_held_out_windows(self):
        from slm_recipes.quant.architectures import scaling_groups
        from slm_recipes.quant.awq import awq_block, collect_stats, input_sites, output_error

        qgrid = self.grid()
        model = copy.deepcopy(self.model)
        sites = input_sites("llama")
        for k, block in enumerate(model.model.layers):
            ref = self.model.model.layers[k]
            groups = [g.linears for g in scaling_groups("llama", ref)]
            # tiny-arith has 4 KV heads for 8 query heads: v's outputs are not o's inputs one to one.
            self.assertEqual(groups, [("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
                                      ("mlp.gate_proj", "mlp.up_proj"), ("mlp.down_proj",)])
            # Sequential: block k is calibrated on the outputs of the already-quantized blocks before it.
            stats = collect_stats(block, "llama", lambda: model(self.calibration))
            result = awq_block(block, "llama", stats, qgrid)
            held = collect_stats(ref, "llama", lambda: self.model(self.held_out))
            for linears in groups + [("self_attn.o_proj",)]:
                awq_err = rtn_err = 0.0
                for name in linears:
                    w = ref.get_submodule(name).weight.detach().float()
                    r = result.linears[name]
                    # What the quantized block computes, in the original model's coordinates.
                    effective = qgrid.dequant(r.q, r.scales, r.zeros)
                    if r.input_scale is not None:
                        effective = effective / r.input_scale
                    if r.output_scale is not None:
                        effective = effective * r.output_scale[:, None]
                    gram = held[sites[name]].gram
                    awq_err += output_error(w - effective, gram)
                    rtn_err += output_error(w - qgrid.fake(w), gram)
                self.assertLess(awq_err, rtn_err, f"layer {k} {linears}: AWQ {awq_err:.4g} vs RTN {rtn_err:.4g}")


@unittest.skipIf(torch is None, "torch and transformers are not installed")
class ScalingGroupsTest(unittest.TestCase):
    def block(self, kv_heads):
        from transformers import LlamaConfig
        from transformers.models.llama.modeling_llama import LlamaDecoderLayer

        cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_attention_heads=4,
                          num_key_value_heads=kv_heads, head_dim=16)
        cfg._attn_implementation = "eager"
        return LlamaDecoderLayer(cfg, 0)

    def test_value_to_output_group_only_without_grouped_query_attention(self):
        from slm_recipes.quant.architectures import scaling_groups

        self.assertEqual([g.name for g in scaling_groups("llama", self.block(4))], ["qkv", "o", "gate_up", "down"])
        self.assertEqual([g.name for g in scaling_groups("llama", self.block(2))], ["qkv", "gate_up", "down"])

    def test_value_to_output_fold_keeps_an_attention_block_unchanged(self):
        from slm_recipes.quant.awq import fold

        torch.manual_seed(1)
        block = self.block(4).eval()
        x = torch.randn(2, 5, 64)
        rope = (torch.ones(2, 5, 16), torch.zeros(2, 5, 16))
        with torch.no_grad():
            before = block(x, position_embeddings=rope, attention_mask=None)
            s = torch.rand(64) * 3 + 0.2
            fold(block.self_attn.v_proj, [block.self_attn.o_proj], s)
            after = block(x, position_embeddings=rope, attention_mask=None)
        before = before[0] if isinstance(before, tuple) else before
        after = after[0] if isinstance(after, tuple) else after
        self.assertLess(float((before - after).abs().max()), 1e-5)

    def test_unknown_architecture_names_the_supported_ones(self):
        from slm_recipes.errors import ConfigError
        from slm_recipes.quant.architectures import check_supported

        for t in ("llama", "mistral", "qwen2", "qwen3"):
            check_supported(t)
        with self.assertRaises(ConfigError) as e:
            check_supported("gemma", "GemmaForCausalLM")
        self.assertIn("gemma (GemmaForCausalLM)", str(e.exception))
        self.assertIn("llama, mistral, qwen2, qwen3", str(e.exception))


if __name__ == "__main__":
    unittest.main()
