"""Config files (--config run.json or run.toml): any flag as a key; which flags each task reads.

A config file holds flags by name ("batch_size" or "batch-size"); flags typed on the command line
override it. Paths in it (data, val_data, test_data, out, resume, a tokenizer file) are relative to
the config file's folder, so a config works from any directory; a data set's name ("data":
"tinyshakespeare") reads it from the data cache (python -m glassformer.data fetch NAME) unless the
config's folder holds a file of that name. Keys starting with "_" are comments.
"""
import difflib
from pathlib import Path

from ..data.fetch import DATA_TARGETS
from ..errors import UserError
from ..inputs import check_path_text, read_json, read_toml

PATH_KEYS = ("data", "val_data", "test_data", "mix_data", "init_from", "out", "resume", "tokenizer")
TOKENIZER_NAMES = ("char", "bpe", "gpt2")                   # --tokenizer values that are not paths
DATASET_KEYS = ("data", "val_data", "test_data", "mix_data")   # may name a data set of the data cache
MAX_CONFIG_BYTES = 1 << 20                                  # a config is a few hundred bytes


def read_config(path):
    """The table of a .json or .toml file as a dict; UserError when it is missing or malformed."""
    path = Path(path)
    if path.suffix not in (".json", ".toml"):
        raise UserError(f"--config {path}: use a .json or .toml file")
    read = read_toml if path.suffix == ".toml" else read_json
    try:
        data = read(path, "config", max_bytes=MAX_CONFIG_BYTES)
    except UserError as e:
        raise UserError(f"--config {e}") from None
    if not isinstance(data, dict):
        raise UserError(f"--config {path}: the file must hold one object of flag names and values, "
                        'e.g. {"task": "lm", "steps": 2000}')
    return data


def config_words(path, parser):
    """The flags in the config file as command-line words, to go before the typed ones (which win)."""
    path = Path(path)
    actions = {a.dest: a for a in parser._actions if a.option_strings and a.dest not in ("help", "config")}
    words, unknown = [], []
    for key, value in read_config(path).items():
        dest = key.replace("-", "_")
        if key.startswith("_"):
            continue                                        # a comment
        if dest not in actions:
            unknown.append(key)
            continue
        flag = max(actions[dest].option_strings, key=len)
        if actions[dest].nargs == 0:                        # a switch: true or false (null: left out)
            if value is not None and not isinstance(value, bool):
                raise UserError(f"--config {path}: {key} is a switch: give it true or false, not {value!r}")
            words += [flag] if value else []
        elif value is not None:
            if isinstance(value, (bool, list, dict)):
                raise UserError(f"--config {path}: {key} takes one number or string, not {value!r}")
            words += [flag, _relative(path, dest, value)]
    if unknown:
        hints = [f"{k} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(
            k.replace("-", "_"), list(actions), n=1)) else k for k in unknown]
        raise UserError(f"--config {path}: unknown key{'s' * (len(unknown) > 1)} {', '.join(hints)}: keys "
                        "are the flags of train_step_by_step.py without the dashes (see --help)")
    return words


def _relative(config_path, dest, value):
    """A path value read from the config's folder (absolute paths, tokenizer and data set names as they are)."""
    text = str(value)
    if dest in PATH_KEYS:
        check_path_text(text, f"--config {config_path}: {dest}")
    if dest not in PATH_KEYS or (dest == "tokenizer" and text in TOKENIZER_NAMES):
        return text
    path = Path(text).expanduser()
    full = path if path.is_absolute() else (config_path.resolve().parent / path).resolve()
    if dest in DATASET_KEYS and text in DATA_TARGETS and not full.exists():
        return text                                         # a data set's name: the data cache's copy
    return str(full)


def check_config_paths(path, args):
    """UserError for an input path that came from the config file (no typed flag replaced it) and does not
    exist, naming the config's folder as the base of relative paths, which it is."""
    path = Path(path)
    for key, value in read_config(path).items():
        dest = key.replace("-", "_")
        if dest not in PATH_KEYS or dest == "out" or value is None or isinstance(value, (bool, list, dict)):
            continue
        full = _relative(path, dest, value)
        if str(getattr(args, dest, None)) != full or full in (*TOKENIZER_NAMES, *DATA_TARGETS):
            continue                                        # replaced on the command line, or a name
        if not Path(full).exists():
            raise UserError(f"--config {path}: {key} {value}: no such file or folder ({full}); paths in a "
                            f"config are relative to its folder, {path.resolve().parent}")


def parse_with_config(parser, argv):
    """Flags from argv over those of its --config file (if any): the parsed namespace."""
    args = parser.parse_args(argv)
    if args.config is None:
        return args
    words = config_words(args.config, parser)
    try:
        parser.parse_args(words)                            # the file's own mistakes, named as such
    except UserError as e:
        raise UserError(f"--config {args.config}: {e}") from None
    args = parser.parse_args(words + argv)
    check_config_paths(args.config, args)
    return args


def given_flags(args, dests):
    """{dest: value} of the flags among dests that were set (typed or from the config file)."""
    return {d: getattr(args, d) for d in dests if getattr(args, d, None) not in (None, False)}


def check_task_flags(given, task, only):
    """UserError naming the given flags that `task` does not read; only: {dest: tasks that read it}."""
    wrong = [d for d in given if d in only and task not in only[d]]
    if not wrong:
        return
    owners = {}
    for d in wrong:
        owners.setdefault(" and ".join(only[d]), []).append("--" + d.replace("_", "-"))
    parts = [f"{', '.join(flags)} {'is' if len(flags) == 1 else 'are'} for {tasks}"
             for tasks, flags in owners.items()]
    hint = " (lm counts --steps)" if task == "lm" and "epochs" in wrong else ""
    raise UserError(f"{'; '.join(parts)}, not {task}{hint}: drop {'it' if len(wrong) == 1 else 'them'}"
                    f"{'' if task == 'lm' else ' or pass --task ' + only[wrong[0]][0]}")


def run_config(settings, task, device, only):
    """The resolved flags of a run as config.json records them: usable as --config to run it again."""
    config = {"task": task, **{k: v for k, v in settings.items()
                               if k != "task" and (k not in only or task in only[k])}, "device": device}
    for key in PATH_KEYS:
        if isinstance(config.get(key), str) and (key != "tokenizer" or config[key] not in TOKENIZER_NAMES):
            config[key] = str(Path(config[key]).resolve())
    return config
