"""The thermometer of "Deep Learning with PyTorch", chapters 5 and 6, with the book's own training
loops on graphnn: the imports changed, nothing else.

First the chapter-5 loop on a leaf tensor, ``params = torch.tensor([1.0, 0.0], requires_grad=True)``,
updated by hand under ``torch.no_grad()`` (it ends, as in the book, at
``tensor([  5.3671, -17.3012], requires_grad=True)``); then chapter 6's ``training_loop`` over the
OrderedDict network with ``optim.SGD``, a training and a validation forward per epoch.

    python examples/thermometer_loop.py
"""
from collections import OrderedDict

import graphnn as torch
import graphnn.nn as nn
import graphnn.optim as optim

t_c = [0.5, 14.0, 15.0, 28.0, 11.0, 8.0, 3.0, -4.0, 6.0, 13.0, 21.0]
t_u = [35.7, 55.9, 58.2, 81.9, 56.3, 48.9, 33.9, 21.8, 48.4, 60.4, 68.4]
t_c = torch.tensor(t_c)
t_u = torch.tensor(t_u)
t_un = 0.1 * t_u


# -- chapter 5 ---------------------------------------------------------------------------------------
def model(t_u, w, b):
    return w * t_u + b


def loss_fn(t_p, t_c):
    squared_diffs = (t_p - t_c)**2
    return squared_diffs.mean()


def training_loop(n_epochs, learning_rate, params, t_u, t_c):
    for epoch in range(1, n_epochs + 1):
        if params.grad is not None:
            params.grad.zero_()

        t_p = model(t_u, *params)
        loss = loss_fn(t_p, t_c)
        loss.backward()

        with torch.no_grad():
            params -= learning_rate * params.grad

        if epoch % 500 == 0:
            print('Epoch %d, Loss %f' % (epoch, float(loss)))

    return params


params = training_loop(
    n_epochs=5000,
    learning_rate=1e-2,
    params=torch.tensor([1.0, 0.0], requires_grad=True),
    t_u=t_un,
    t_c=t_c)
print(params)

# -- chapter 6 ---------------------------------------------------------------------------------------
t_c = t_c.unsqueeze(1)
t_u = t_u.unsqueeze(1)
train_indices, val_indices = [2, 7, 8, 9, 10, 0, 1, 4, 6], [3, 5]  # the book's shuffled split
t_u_train, t_c_train = t_u[train_indices], t_c[train_indices]
t_u_val, t_c_val = t_u[val_indices], t_c[val_indices]
t_un_train, t_un_val = 0.1 * t_u_train, 0.1 * t_u_val


def training_loop(n_epochs, optimizer, model, loss_fn, t_u_train, t_u_val,  # noqa: F811 - the book's second loop
                  t_c_train, t_c_val):
    for epoch in range(1, n_epochs + 1):
        t_p_train = model(t_u_train)
        loss_train = loss_fn(t_p_train, t_c_train)

        t_p_val = model(t_u_val)
        loss_val = loss_fn(t_p_val, t_c_val)

        optimizer.zero_grad()
        loss_train.backward()
        optimizer.step()

        if epoch == 1 or epoch % 1000 == 0:
            print(f"Epoch {epoch}, Training loss {loss_train.item():.4f},"
                  f" Validation loss {loss_val.item():.4f}")


torch.manual_seed(0)
seq_model = nn.Sequential(OrderedDict([
    ('hidden_linear', nn.Linear(1, 8)),
    ('hidden_activation', nn.Tanh()),
    ('output_linear', nn.Linear(8, 1))
]))
optimizer = optim.SGD(seq_model.parameters(), lr=1e-3)

training_loop(
    n_epochs=5000,
    optimizer=optimizer,
    model=seq_model,
    loss_fn=nn.MSELoss(),
    t_u_train=t_un_train,
    t_u_val=t_un_val,
    t_c_train=t_c_train,
    t_c_val=t_c_val)

print('output', seq_model(t_un_val))
print('answer', t_c_val)
print('hidden', seq_model.hidden_linear.weight.grad)
