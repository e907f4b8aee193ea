"""Learn XOR with a tiny network, using nothing but deepgrad's tensors and autograd.

XOR is the classic function a single linear layer cannot represent: the two classes are not
separable by a line. One hidden layer of tanh units makes it learnable. Here the network is
written out by hand (no nn.Module, no optimizer), so every step of training is visible:

    hidden = tanh(x @ W1 + b1)          (4, 2) @ (2, 8) -> (4, 8)
    out    = sigmoid(hidden @ W2 + b2)  (4, 8) @ (8, 1) -> (4, 1)
    loss   = mean((out - y) ** 2)

loss.backward() fills W1.grad, b1.grad, W2.grad and b2.grad; a plain gradient-descent step then
moves each parameter against its gradient. The same code runs under PyTorch with
`import torch as dg`.

Run:  python examples/xor_autograd.py   (exits 1 if the network did not learn XOR)
"""

from __future__ import annotations

import sys

import deepgrad as dg

STEPS = 2000
LR = 1.0
PRINT_EVERY = 250

# The four XOR points and their targets.
x = dg.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
y = dg.tensor([[0.0], [1.0], [1.0], [0.0]])

# Parameters are leaf tensors that ask autograd to record their gradient.
dg.manual_seed(0)
W1 = dg.randn(2, 8, requires_grad=True)
b1 = dg.zeros(8, requires_grad=True)
W2 = dg.randn(8, 1, requires_grad=True)
b2 = dg.zeros(1, requires_grad=True)
params = [W1, b1, W2, b2]


def forward(inputs: dg.Tensor) -> dg.Tensor:
    hidden = (inputs @ W1 + b1).tanh()
    return (hidden @ W2 + b2).sigmoid()


for step in range(1, STEPS + 1):
    out = forward(x)
    loss = ((out - y) ** 2).mean()

    loss.backward()

    # The update itself must not be recorded in the graph, hence no_grad.
    with dg.no_grad():
        for p in params:
            p.add_(p.grad, alpha=-LR)  # p <- p - LR * dloss/dp
            p.grad = None  # gradients accumulate, so clear them for the next step

    if step == 1 or step % PRINT_EVERY == 0:
        print(f"step {step:5d}  loss {loss.item():.6f}")

with dg.no_grad():
    out = forward(x)

print()
print(" x1  x2 | target | output  rounded")
learned = True
for i in range(4):
    x1 = x[i, 0].item()
    x2 = x[i, 1].item()
    target = y[i, 0].item()
    value = out[i, 0].item()
    rounded = round(value)
    learned = learned and rounded == target
    print(f"{x1:3.0f} {x2:3.0f} | {target:6.0f} | {value:.4f}  {rounded}")

print()
if learned:
    print("learned XOR")
else:
    print("did NOT learn XOR")
    sys.exit(1)
