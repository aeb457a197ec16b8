"""The MNIST chapter of "Python深度学习：基于PyTorch" (seed chapter "使用优化器的一般步骤"), its
training loop as the book writes it, run on graphnn by changing the imports.

The adaptations: scikit-learn's 8x8 digits instead of torchvision's MNIST download (so the input
layer is 8*8, not 28*28, and the images come as TensorDatasets), and ``--epochs``. The network
(Linear + BatchNorm1d twice, then Linear), SGD with momentum 0.5, the learning-rate decay through
``optimizer.param_groups[0]['lr'] *= 0.1`` every 5 epochs, ``img.view(img.size(0), -1)``,
``_, pred = out.max(1)`` and the train/eval passes of each epoch are the book's.

Run: python examples/book_mnist.py [--epochs 20]
"""
import argparse

import numpy as np
from sklearn.datasets import load_digits

import graphnn as torch
import graphnn.nn.functional as F
import graphnn.optim as optim
from graphnn import nn
from graphnn.utils.data import DataLoader, TensorDataset

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=20)
args = parser.parse_args()

torch.manual_seed(0)

# 定义一些超参数
train_batch_size = 64
test_batch_size = 128
learning_rate = 0.01
num_epoches = args.epochs
lr = 0.01
momentum = 0.5

# 下载数据并对数据进行预处理 (the digits scikit-learn ships, normalised as the book's MNIST)
digits = load_digits()
images = torch.tensor(((digits.images / 16.0) - 0.5) / 0.5, dtype=torch.float32).unsqueeze(1)
labels = torch.tensor(digits.target)
train_dataset = TensorDataset(images[:-360], labels[:-360])
test_dataset = TensorDataset(images[-360:], labels[-360:])
train_loader = DataLoader(train_dataset, batch_size=train_batch_size, shuffle=True)
test_loader = DataLoader(test_dataset, batch_size=test_batch_size, shuffle=False)


class Net(nn.Module):
    """使用 sequential 构建网络，Sequential() 函数的功能是将网络的层组合到一起"""

    def __init__(self, in_dim, n_hidden_1, n_hidden_2, out_dim):
        super(Net, self).__init__()
        self.layer1 = nn.Sequential(nn.Linear(in_dim, n_hidden_1), nn.BatchNorm1d(n_hidden_1))
        self.layer2 = nn.Sequential(nn.Linear(n_hidden_1, n_hidden_2), nn.BatchNorm1d(n_hidden_2))
        self.layer3 = nn.Sequential(nn.Linear(n_hidden_2, out_dim))

    def forward(self, x):
        x = F.relu(self.layer1(x))
        x = F.relu(self.layer2(x))
        x = self.layer3(x)
        return x


# 检测是否有可用的 GPU，有则使用，否则使用 CPU
device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
# 实例化网络
model = Net(8 * 8, 300, 100, 10)
model.to(device)

# 定义损失函数和优化器
criterion = nn.CrossEntropyLoss()
optimizer = optim.SGD(model.parameters(), lr=lr, momentum=momentum)

# 开始训练
losses = []
acces = []
eval_losses = []
eval_acces = []

for epoch in range(num_epoches):
    train_loss = 0
    train_acc = 0
    model.train()
    # 动态修改参数学习率
    if epoch % 5 == 0:
        optimizer.param_groups[0]['lr'] *= 0.1
    for img, label in train_loader:
        img = img.to(device)
        label = label.to(device)
        img = img.view(img.size(0), -1)
        # 前向传播
        out = model(img)
        loss = criterion(out, label)
        # 反向传播
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        # 记录误差
        train_loss += loss.item()
        # 计算分类的准确率
        _, pred = out.max(1)
        num_correct = (pred == label).sum().item()
        acc = num_correct / img.shape[0]
        train_acc += acc

    losses.append(train_loss / len(train_loader))
    acces.append(train_acc / len(train_loader))
    # 在测试集上检验效果
    eval_loss = 0
    eval_acc = 0
    # 将模型改为预测模式
    model.eval()
    for img, label in test_loader:
        img = img.to(device)
        label = label.to(device)
        img = img.view(img.size(0), -1)
        out = model(img)
        loss = criterion(out, label)
        # 记录误差
        eval_loss += loss.item()
        # 记录准确率
        _, pred = out.max(1)
        num_correct = (pred == label).sum().item()
        acc = num_correct / img.shape[0]
        eval_acc += acc

    eval_losses.append(eval_loss / len(test_loader))
    eval_acces.append(eval_acc / len(test_loader))
    print('epoch: {}, Train Loss: {:.4f}, Train Acc: {:.4f}, Test Loss: {:.4f}, Test Acc: {:.4f}'
          .format(epoch, train_loss / len(train_loader), train_acc / len(train_loader),
                  eval_loss / len(test_loader), eval_acc / len(test_loader)))

print(f"final test accuracy {np.mean(eval_acces[-1:]):.4f}")
