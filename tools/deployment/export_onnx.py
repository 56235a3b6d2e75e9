"""Export the SAEViT backbone to ONNX (static shape) and check it.

Examples::

    python tools/deployment/export_onnx.py --arch t --out saevit-t.onnx
    python tools/deployment/export_onnx.py --arch s --shape 512 512 \\
        --checkpoint backbone.pth --fuse --out saevit-s_512.onnx

The TorchScript exporter (``dynamo=False``) is used: torch 2.14's default
dynamo exporter needs ``onnxscript``. The graph has one input ``input``
(``N x 3 x H x W``) and one output per ``--out-indices`` entry
(``out0``...). With ``--fuse`` BatchNorm is folded into the convolutions
first (:func:`saevit_mm.deploy.switch_to_deploy`). Unless ``--no-check``,
onnxruntime runs the graph and the largest difference to PyTorch is printed.
"""
import argparse

from saevit_mm.deploy import check_onnx, export_onnx, switch_to_deploy
from saevit_mm.registry import MODELS


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--arch', default='t', help='SAEViT arch key')
    parser.add_argument(
        '--checkpoint',
        help='backbone weights (tensors only; a classifier '
        'checkpoint works with --prefix backbone.)')
    parser.add_argument(
        '--prefix',
        default='',
        help='load only the keys with this prefix (stripped), e.g. backbone.')
    parser.add_argument(
        '--out-indices', type=int, nargs='+', default=[0, 1, 2, 3])
    parser.add_argument(
        '--shape', type=int, nargs=2, default=[224, 224], metavar=('H', 'W'))
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--opset', type=int, default=17)
    parser.add_argument('--fuse', action='store_true', help='fold BN first')
    parser.add_argument('--no-check', action='store_true')
    parser.add_argument('--out', required=True, help='output .onnx path')
    return parser.parse_args(argv)


def load_weights(model, path: str, prefix: str = '') -> None:
    """Load ``path`` into ``model``; every backbone weight must be there.

    Every key must match: anything missing would be exported with random
    weights, anything left over means the file is of another model.
    """
    from mmengine.runner.checkpoint import (_load_checkpoint,
                                            _load_checkpoint_with_prefix)
    if prefix:  # keep only the keys with the prefix, stripped
        state = _load_checkpoint_with_prefix(prefix, path, 'cpu')
    else:
        state = _load_checkpoint(path, 'cpu')
        state = state.get('state_dict', state)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise KeyError(f'{path} does not match SAEViT: missing keys '
                       f'{missing}, unexpected keys {unexpected} (check '
                       '--arch and --prefix)')


def main(argv=None) -> None:
    args = parse_args(argv)
    model = MODELS.build(
        dict(
            type='SAEViT', arch=args.arch,
            out_indices=tuple(args.out_indices)))
    if args.checkpoint:
        load_weights(model, args.checkpoint, args.prefix)
    model.eval()
    shape = (args.batch, 3, *args.shape)
    if args.fuse:
        folded = switch_to_deploy(model, probe_size=args.shape)
        print(f'folded {len(folded)} BatchNorm layers')
    names = export_onnx(model, shape, args.out, opset_version=args.opset)
    print(f'wrote {args.out}: input {list(shape)}, outputs {names}')
    if not args.no_check:
        diffs = check_onnx(model, args.out, shape)
        print('onnxruntime vs PyTorch, max |diff|: ' +
              ', '.join(f'{k}={v:.2e}' for k, v in diffs.items()))


if __name__ == '__main__':
    main()
