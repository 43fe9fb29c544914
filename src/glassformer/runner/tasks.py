"""The digits and sentences tasks of train_step_by_step.py: data, model config, metrics, examples."""
from .. import backend
from ..backend import to_numpy
from ..generate import generate_tokens
from ..layers.loss import CrossEntropyLoss
from ..models import ModelConfig
from ..tasks import digits, sentences
from ..tokenizers import WordTokenizer
from ..train import epochs as training

class DigitsTask:
    """Digit operations ("Max ( 5 3 9 )" -> 9): an encoder classifier, 80/10/10 split."""

    name = "digits"
    vocab = digits.VOCAB

    def __init__(self, size, seed, n_args=3, digit_range="0-9"):
        low, high = (int(d) for d in digit_range.split("-"))
        self.config = digits.DigitsConfig(size=size, n_args=n_args, low=low, high=high, seed=seed)
        self.data = {k: (backend.to_device(ids), backend.to_device(y), ops)
                     for k, (ids, y, ops) in digits.split(self.config).items()}

    def model_config(self):
        """The seed's medium configuration (2 post-LN blocks, 4 heads, d_model 64, FFN 256)."""
        return ModelConfig(vocab_size=len(self.vocab), kind="encoder_classifier", d_model=64,
                           n_heads=4, n_layers=2, d_ff=256, max_len=16, n_classes=10)

    def loss_fn(self):
        return CrossEntropyLoss()

    def n_train(self):
        return len(self.data["train"][0])

    def train_data(self):
        """(ids (N, T), classes (N,), pad or None): what the epochs shuffle into mini-batches."""
        ids, y, _ = self.data["train"]
        return ids, y, None

    def evaluate(self, model, loss_fn, split="val"):
        ids, y, _ = self.data[split]
        loss, acc, _ = training.evaluate(model, loss_fn, ids, y)
        return loss, acc

    def report(self, model, loss_fn):
        """Test loss and accuracy, overall and per operation."""
        ids, y, ops = self.data["test"]
        loss, acc, preds = training.evaluate(model, loss_fn, ids, y)
        per_op = training.accuracy_by_group(preds, to_numpy(y), ops, digits.OPERATIONS)
        return {"test_loss": loss, "test_accuracy": acc, "per_operation_accuracy": per_op}

    def walk_example(self):
        """The first training example: ids (1, T), target (1,)."""
        ids, y, _ = self.data["train"]
        return ids[:1], y[:1]

    def plot_example(self):
        """The first test example, ids (1, T), and its tokens."""
        ids = self.data["test"][0][:1]
        return ids, [self.vocab[i] for i in to_numpy(ids[0])]

    def tokenizer(self):
        return WordTokenizer(self.vocab[2:], specials=self.vocab[:2]).to_dict()

    def meta(self):
        return {"name": self.name, **self.config.to_dict(), "operations": digits.OPERATIONS}


class SentencesTask:
    """Next-word prediction on the 8 fixed sentences: a causal decoder; evaluated on the same 8."""

    name = "sentences"
    prompts = ["", "the", "a", "the dog", "a bird"]

    def __init__(self, size, seed):
        self.size, self.seed = size, seed
        self.vocab = sentences.vocabulary()
        x, y = sentences.dataset(self.vocab)
        self.ids, self.targets = backend.to_device(x), backend.to_device(y)

    def model_config(self):
        return ModelConfig(vocab_size=len(self.vocab), kind="decoder_lm", d_model=64, n_heads=4,
                           n_layers=2, d_ff=128, max_len=16)

    def loss_fn(self):
        return CrossEntropyLoss(ignore_index=sentences.PAD)

    def n_train(self):
        return len(self.ids)

    def train_data(self):
        """(ids (N, T), next words (N, T), pad): pad targets are neither in the loss nor counted."""
        return self.ids, self.targets, sentences.PAD

    def evaluate(self, model, loss_fn, split="val"):
        return training.evaluate_lm(model, loss_fn, self.ids, self.targets, pad=sentences.PAD)

    def report(self, model, loss_fn):
        """Next-word accuracy against the best possible one, and greedy continuations."""
        loss, acc = self.evaluate(model, loss_fn)
        return {"test_loss": loss, "test_accuracy": acc, "next_word_accuracy": acc,
                "best_possible_accuracy": sentences.best_possible_accuracy(),
                "samples": {p or "<START>": self.continue_prompt(model, p) for p in self.prompts}}

    def continue_prompt(self, model, prompt):
        """Greedy continuation of <START> + prompt until <END>, as words."""
        index = {w: i for i, w in enumerate(self.vocab)}
        ids = [sentences.START] + [index[w] for w in prompt.split()]
        new = generate_tokens(model, ids, max_new_tokens=model.config.max_len - len(ids), temperature=0,
                             eos_id=sentences.END)
        words = [self.vocab[i] for i in new if i != sentences.END]
        return " ".join(prompt.split() + words)

    def walk_example(self):
        """The first sentence: ids (1, T) from <START>, next-word targets (1, T)."""
        return self.ids[:1], self.targets[:1]

    def plot_example(self):
        ids = self.ids[:1]
        return ids, [self.vocab[i] for i in to_numpy(ids[0])]

    def tokenizer(self):
        return WordTokenizer(self.vocab[len(sentences.SPECIALS):], specials=sentences.SPECIALS).to_dict()

    def meta(self):
        return {"name": self.name, "size": self.size, "seed": self.seed,
                "sentences": sentences.SENTENCES, "pad": sentences.PAD, "start": sentences.START,
                "end": sentences.END}


TASK_CLASSES = {"digits": DigitsTask, "sentences": SentencesTask}
