"""Special tokens shared by every backbone, and the word-level tokenizer of the embedded benchmark.

The tiny backbone has no pretrained tokenizer: ``prepare`` builds one from the words the generator
emitted (``vocab.txt``), so every token is a whole word and sequences stay short.
"""

from __future__ import annotations

from pathlib import Path

from mmcl.data.records import Sample

MEDIA_TOKENS = {"image": "<image>", "audio": "<audio>", "video": "<video>"}
ANSWER_TOKEN = "<answer>"  # separates the prompt from the supervised answer
EXTRA_SPECIAL_TOKENS = [*MEDIA_TOKENS.values(), ANSWER_TOKEN]
IGNORE = -100  # the label of a position no loss is taken at (as in Hugging Face's losses)


def words_of(sample: Sample) -> set[str]:
    """The words of a sample's instruction, answers and options: what a word-level tokenizer must know."""
    return {word for text in (sample.instruction, *sample.answers, *(sample.options or ())) for word in text.split()}


def build_word_tokenizer(vocab_file: Path, out_dir: Path) -> None:
    """Save a Hugging Face fast tokenizer whose vocabulary is the specials plus one id per word."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from mmcl.core.io import atomic_path

    words = [w for w in Path(vocab_file).read_text().split("\n") if w]
    specials = ["<pad>", "<unk>", "<bos>", "<eos>", *EXTRA_SPECIAL_TOKENS]
    vocab = {token: i for i, token in enumerate(specials + [w for w in words if w not in specials])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<bos>",
        eos_token="<eos>",
        additional_special_tokens=EXTRA_SPECIAL_TOKENS,
    )
    with atomic_path(out_dir) as tmp:
        tokenizer.save_pretrained(tmp)
