"""A fastrnn Sequential as a torch module (for comparisons: examples, benchmarks, tests)."""

import functools

import numpy as np

from fastrnn._layers import RNNBase
from fastrnn.models import Dense, Dropout, Embedding, FinalState


@functools.cache
def _torch_sequential_class():
    import torch
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    activations = {None: lambda z: z, "relu": torch.relu, "tanh": torch.tanh,
                   "sigmoid": torch.sigmoid, "softmax": lambda z: torch.softmax(z, -1)}

    class TorchSequential(nn.Sequential):
        """torch.nn.Sequential whose forward knows FinalState, lengths and mask_zero.

        ``kinds[i]`` is "final" for a FinalState (an ``nn.Identity`` placeholder),
        "dense" for a Dense (an ``nn.Linear`` followed by ``activations[i]``).
        """

        def __init__(self, modules, kinds, dense_activations, mask_zero, masked_output):
            super().__init__(*modules)
            self.kinds = kinds
            self.dense_activations = dense_activations
            self.mask_zero = mask_zero
            self.masked_output = masked_output

        def forward(self, x, lengths=None, logits=False):
            B, T = x.shape[:2]
            real = scatter = empty = None
            # Masks shape only the recurrent layers' view (as in fastrnn's Sequential):
            # without one, every item works per position and nothing moves.
            if self.mask_zero and "recurrent" in self.kinds:
                real = x != 0
                lengths = real.sum(1)
                empty = lengths == 0
                lengths = lengths.clamp(min=1)
                x = torch.gather(x, 1, torch.argsort((~real).to(torch.int8), dim=1,
                                                     stable=True))
                rank = torch.cumsum(real, 1) - 1
                scatter = rank if self.masked_output == "previous" else \
                    torch.where(real, rank, -1)
            elif lengths is not None:
                lengths = torch.as_tensor(lengths)
                real = torch.arange(T)[None, :] < lengths[:, None]
                if self.masked_output == "previous":
                    scatter = torch.cumsum(real, 1) - 1
            last_recurrent = max(i for i, k in enumerate(self.kinds) if k == "recurrent") \
                if "recurrent" in self.kinds else None
            sequences = "final" not in self.kinds
            h, h_n, last = x, None, len(self) - 1
            for i, (module, kind) in enumerate(zip(self, self.kinds)):
                if kind == "recurrent":
                    if lengths is not None:
                        packed = pack_padded_sequence(h, lengths.cpu(), batch_first=True,
                                                      enforce_sorted=False)
                        out, h_n = module(packed)
                        h, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
                    else:
                        h, h_n = module(h)
                    if empty is not None and empty.any():
                        h = h.masked_fill(empty[:, None, None], 0)
                        h_n = tuple(s.masked_fill(empty[None, :, None], 0) for s in h_n) \
                            if isinstance(h_n, tuple) else \
                            h_n.masked_fill(empty[None, :, None], 0)
                    directions = 2 if module.bidirectional else 1
                    if i == last_recurrent and sequences and scatter is not None:
                        index = scatter.clamp(min=0)[:, :, None].expand(-1, -1, h.shape[-1])
                        h = torch.gather(h, 1, index).masked_fill(
                            (scatter < 0)[:, :, None], 0)
                elif kind == "final":
                    state = h_n[0] if isinstance(h_n, tuple) else h_n
                    h = torch.cat(list(state[-directions:]), dim=-1)
                elif kind == "dense":
                    h = module(h)
                    if not (logits and i == last):
                        h = activations[self.dense_activations[i]](h)
                else:
                    h = module(h)
            return h

    return TorchSequential


def sequential_to_torch(model):
    """The torch module equivalent to ``model`` (same indices and parameter names)."""
    import torch
    from torch import nn

    dtype = torch.float32 if model.dtype == np.float32 else torch.float64
    modules, kinds, dense_activations = [], [], {}
    for i, item in enumerate(model.items):
        if isinstance(item, Embedding):
            modules.append(nn.Embedding(item.num_embeddings, item.embedding_dim,
                                        padding_idx=item.padding_idx, dtype=dtype))
            kinds.append("embedding")
        elif isinstance(item, RNNBase):
            modules.append(item.to_torch())
            kinds.append("recurrent")
        elif isinstance(item, FinalState):
            modules.append(nn.Identity())
            kinds.append("final")
        elif isinstance(item, Dense):
            modules.append(nn.Linear(item.in_features, item.out_features, bias=item.bias,
                                     dtype=dtype))
            kinds.append("dense")
            dense_activations[i] = item.activation
        elif isinstance(item, Dropout):
            modules.append(nn.Dropout(item.p))
            kinds.append("dropout")
    embedding = model.embedding
    module = _torch_sequential_class()(
        modules, kinds, dense_activations,
        mask_zero=bool(embedding is not None and embedding.mask_zero),
        masked_output=model.masked_output)
    module.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v))
                            for k, v in model.state_dict().items()})
    return module
