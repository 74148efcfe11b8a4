"""AWQ GEMM packing against words worked out by hand from the format description (pack_awq's docstring):
qweight [in, out/8] and qzeros [in/g, out/8] hold 8 output channels per int32 word, nibble k (bits 4k..4k+3)
holding channel ORDER[k] of the block, ORDER = [0, 2, 4, 6, 1, 3, 5, 7]; zeros stored as they are; scales
fp16 [in/g, out]; W[o, i] = (q − z) · s. Both directions: pack gives the words, unpack/dequantize read them."""
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "recipes"))

try:
    import torch
except ImportError:
    torch = None

WRAP = 1 << 32  # a word whose top nibble is ≥ 8 reads as negative in int32


@unittest.skipIf(torch is None, "torch is not installed")
class AwqGemmPackingTest(unittest.TestCase):
    def setUp(self):
        # out = 8 channels, in = 4, group size 2 (two groups). q[o, i]:
        #   i=0: o+1 → 1..8     i=1: 15−o → 15..8     i=2: all 0     i=3: 15 on channel 1 only
        self.q = torch.tensor([[o + 1, 15 - o, 0, 15 if o == 1 else 0] for o in range(8)])
        # zeros: group 0 all 8; group 1 the channel number o
        self.zeros = torch.tensor([[8, o] for o in range(8)])
        self.scales = torch.tensor([[0.5, 0.25] for _ in range(8)])
        # Words, nibbles written n7..n0, nibble k = channel ORDER[k] = c0 c2 c4 c6 c1 c3 c5 c7 from the right:
        #   i=0: c=[1..8]        n0..n7 = 1,3,5,7,2,4,6,8     → 0x86427531
        #   i=1: c=[15..8]       n0..n7 = F,D,B,9,E,C,A,8     → 0x8ACE9BDF
        #   i=2: all 0                                         → 0
        #   i=3: c1=15 → n4                                    → 0x000F0000 = 983040
        self.qweight = torch.tensor([[0x86427531 - WRAP], [0x8ACE9BDF - WRAP], [0], [983040]], dtype=torch.int32)
        #   group 0: all 8 → 0x88888888; group 1: c=[0..7] → n0..n7 = 0,2,4,6,1,3,5,7 → 0x75316420
        self.qzeros = torch.tensor([[0x88888888 - WRAP], [0x75316420]], dtype=torch.int32)
        # W[o, i] = (q − z) · s by hand
        self.weight = torch.tensor([
            [-3.5, 3.5, 0.0, 0.0],
            [-3.0, 3.0, -0.25, 3.5],
            [-2.5, 2.5, -0.5, -0.5],
            [-2.0, 2.0, -0.75, -0.75],
            [-1.5, 1.5, -1.0, -1.0],
            [-1.0, 1.0, -1.25, -1.25],
            [-0.5, 0.5, -1.5, -1.5],
            [0.0, 0.0, -1.75, -1.75],
        ])

    def test_pack_gives_the_hand_computed_words(self):
        from slm_recipes.quant.pack_awq import pack

        t = pack(self.q, self.zeros, self.scales)
        self.assertEqual(t["qweight"].dtype, torch.int32)
        self.assertEqual(t["qweight"].tolist(), self.qweight.tolist())
        self.assertEqual(t["qzeros"].dtype, torch.int32)
        self.assertEqual(t["qzeros"].tolist(), self.qzeros.tolist())
        self.assertEqual(t["scales"].dtype, torch.float16)
        self.assertEqual(t["scales"].tolist(), [[0.5] * 8, [0.25] * 8])

    def test_unpack_and_dequantize_read_the_hand_computed_words(self):
        from slm_recipes.quant.pack_awq import dequantize, unpack

        scales = torch.tensor([[0.5] * 8, [0.25] * 8], dtype=torch.float16)
        q, zeros, s = unpack(self.qweight, self.qzeros, scales)
        self.assertEqual(q.tolist(), self.q.tolist())
        self.assertEqual(zeros.tolist(), self.zeros.tolist())
        self.assertEqual(s.tolist(), self.scales.tolist())
        self.assertEqual(dequantize(self.qweight, self.qzeros, scales).tolist(), self.weight.tolist())

    def test_second_block_of_eight_channels_goes_to_the_second_word(self):
        from slm_recipes.quant.pack_awq import pack, unpack

        q = torch.arange(16).reshape(16, 1)  # one input channel, q[o] = o
        # block 0: c=[0..7] → 0x75316420; block 1: c=[8..15] → n0..n7 = 8,A,C,E,9,B,D,F → 0xFDB9ECA8
        words = [[0x75316420, 0xFDB9ECA8 - WRAP]]
        t = pack(q, torch.zeros(16, 1, dtype=torch.int64), torch.ones(16, 1))
        self.assertEqual(t["qweight"].tolist(), words)
        self.assertEqual(t["qzeros"].tolist(), [[0, 0]])
        back, _, _ = unpack(torch.tensor(words, dtype=torch.int32), t["qzeros"], t["scales"])
        self.assertEqual(back.tolist(), q.tolist())

    def test_refuses_codes_outside_four_bits_and_widths_not_a_multiple_of_eight(self):
        from slm_recipes.quant.pack_awq import pack

        with self.assertRaises(ValueError):
            pack(torch.full((8, 2), 16), torch.zeros(8, 1), torch.ones(8, 1))
        with self.assertRaises(ValueError):
            pack(torch.zeros(12, 2, dtype=torch.int64), torch.zeros(12, 1), torch.ones(12, 1))


if __name__ == "__main__":
    unittest.main()
