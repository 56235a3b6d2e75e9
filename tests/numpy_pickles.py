"""Checkpoints as the other numpy writes them: numpy 2 moved ``numpy.core``
to ``numpy._core``, and a pickle names the module its objects came from.
Not a test module."""
import pickletools
import struct
import zipfile
from pathlib import Path
from typing import List

#: The numpy globals each numpy pickles for arrays, scalars and dtypes
#: (numpy 1.26.4 and 2.4.6: protocol 2, as torch.save writes).
NUMPY_CORE = dict(numpy1='numpy.core', numpy2='numpy._core')
NUMPY_GLOBALS = {
    numpy: {
        f'{core}.multiarray._reconstruct', f'{core}.multiarray.scalar',
        'numpy.ndarray', 'numpy.dtype'
    }
    for numpy, core in NUMPY_CORE.items()
}


def pickle_globals(path: Path) -> List[str]:
    """``module.name`` of every GLOBAL in a torch.save file's pickle."""
    with zipfile.ZipFile(path) as zf:
        pickled = zf.read(
            next(n for n in zf.namelist() if n.endswith('/data.pkl')))
    return [
        arg.replace(' ', '.', 1)
        for opcode, arg, _ in pickletools.genops(pickled)
        if opcode.name == 'GLOBAL'
    ]


def with_numpy_names(pickled: bytes, numpy: str) -> bytes:
    """Rename the numpy core globals as ``numpy`` ('numpy1' or 'numpy2')
    writes them.

    torch.save pickles with protocol 2, where a global is the GLOBAL opcode
    followed by ``module\\nname\\n``: no length prefix and no frame, so the
    text can change length. Later protocols (SHORT_BINUNICODE + STACK_GLOBAL,
    FRAME) would need their lengths rewritten: refuse them. This turns a
    pickle of arrays, scalars and dtypes written under one numpy into the
    very bytes the other numpy writes for the same values (compared under
    numpy 1.26.4 and 2.4.6 when this was written).
    """
    target = NUMPY_CORE[numpy]
    chunks, start = [], 0
    for opcode, arg, pos in pickletools.genops(pickled):
        assert opcode.name not in ('STACK_GLOBAL', 'FRAME', 'INST'), (
            f'{opcode.name} at byte {pos}: expected a protocol 2 pickle')
        if opcode.name != 'GLOBAL':
            continue
        module, name = arg.split(' ', 1)
        text = f'c{module}\n{name}\n'.encode()
        assert pickled[pos:pos + len(text)] == text, (pos, arg)
        for core in NUMPY_CORE.values():
            if module == core or module.startswith(core + '.'):
                module = target + module[len(core):]
                chunks += [pickled[start:pos], f'c{module}\n{name}\n'.encode()]
                start = pos + len(text)
                break
    return b''.join(chunks + [pickled[start:]])


def write_with_numpy_names(src: Path, dst: Path, numpy: str) -> None:
    """Copy a torch.save file with its pickle renamed by
    :func:`with_numpy_names`, in torch's zip layout: the same records in the
    same order, stored, each record's data 64-byte aligned by padding in an
    ``FB`` extra field, as torch's writer does."""
    with zipfile.ZipFile(src) as zf:
        records = [(info, zf.read(info)) for info in zf.infolist()]
    with zipfile.ZipFile(dst, 'w', zipfile.ZIP_STORED) as out:
        for info, data in records:
            if info.filename.endswith('/data.pkl'):
                data = with_numpy_names(data, numpy)
            entry = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            # local file header: 30 bytes, the name, then the extra field
            # (4 bytes of id and size before the padding)
            header = 30 + len(info.filename.encode()) + 4
            padding = -(out.fp.tell() + header) % 64
            entry.extra = struct.pack('<HH', 0x4246, padding) + b'Z' * padding
            out.writestr(entry, data)


def other_numpy() -> str:
    """'numpy1' under numpy 2, 'numpy2' under numpy 1."""
    import numpy as np
    return 'numpy1' if int(np.__version__.split('.')[0]) >= 2 else 'numpy2'
