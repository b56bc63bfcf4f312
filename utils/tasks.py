"""Task names: 'deblurring', 'DEBLURRING', 'Deblurring' all mean the preset 'Deblurring' of MPRNet.py.

Entry points (the command line's task_type, torch.hub, build_model, resolve_weights) canonicalise
once with ``canonical_task``; what they call passes that name on and only checks it
(``require_canonical``).
"""
from MPRNet import PRESETS

__all__ = ['canonical_task', 'require_canonical']


def canonical_task(name: str) -> str:
    """'deblurring', 'DEBLURRING', 'Deblurring' -> 'Deblurring'; unknown names raise."""
    for task in PRESETS:
        if name.lower() == task.lower():
            return task
    raise ValueError(f"unknown task {name!r}: choose one of {', '.join(PRESETS)}")


def require_canonical(task: str) -> str:
    """`task` unchanged if it is a canonical name, else ValueError."""
    if task not in PRESETS:
        raise ValueError(f"{task!r} is not a canonical task name ({', '.join(PRESETS)}): pass it through "
                         'canonical_task at the entry point')
    return task
