"""SAEViT backbone.

"A Lightweight Convolution and Vision Transformer integrated model with
Multi-scale Self-attention Mechanism", arXiv 2508.16884
(https://arxiv.org/abs/2508.16884).

Follows the paper: a four-stage conv + ViT pyramid whose blocks combine
Sparsely Aggregated Attention (SAA), the Channel-Interactive FFN (CIFFN) and
DWSConv, at about 0.8 and 1.3 GFLOPs for the two variants. The paper's code
and architecture tables are not public, so everything else (stem,
downsampling, block layout, widths, depths, heads, sample ratios, the
multi-scale attention variant) is our design, calibrated to those FLOPs; the
README's architecture section lists each choice.
"""
import os
import os.path as osp
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from mmcv.cnn import build_norm_layer
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.runner.checkpoint import CheckpointLoader
from torch import Tensor, nn

from saevit_mm.registry import register_model
from ..layers import SAEViTStage, SparselyAggregatedAttention
from ..layers.block import (ATTN_TYPES, FFN_TYPES, check_choice,
                            check_deployable)
from ..layers.norm import build_norm2d
from ..layers.saa import check_max_delegates
from ..layers.stem import ConvStem
from ..utils.backbone_utils import (NORM_LAYERS, check_frozen_stages,
                                    freeze_module, init_conv, is_batch_norm,
                                    normalize_out_indices,
                                    normalizes_with_local_batch, set_norm_eval)
from ..utils.checkpoint import (check_pretrained_state_dict,
                                pretrained_state_dict)

__all__ = ['SAEViT']

#: Default SAA delegate bound per stage of the zoo archs: above it the cells
#: grow with the input (README, "Resolution-adaptive sampling"). Every input
#: up to 512 x 512 stays below it in every stage.
_MAX_DELEGATES = (1024, 1024, 1024, 1024)

#: Per-stage arch fields (tuples with one entry per stage).
_STAGE_KEYS = ('embed_dims', 'depths', 'num_heads', 'sample_ratios')
#: Every key a custom arch dict may have, with defaults for the optional ones.
_REQUIRED_KEYS = _STAGE_KEYS + ('ffn_ratio', )
_OPTIONAL_KEYS = dict(ffn_kernel_sizes=(3, 5, 7, 9), max_delegates=None)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_arch(arch: Dict) -> Dict:
    """Check a custom arch dict and return a copy with the defaults filled.

    Raises:
        KeyError: Missing or unknown keys.
        ValueError: Per-stage fields of different lengths or bad values.
    """
    allowed = set(_REQUIRED_KEYS) | set(_OPTIONAL_KEYS)
    missing = [k for k in _REQUIRED_KEYS if k not in arch]
    extra = sorted(set(arch) - allowed)
    if missing or extra:
        raise KeyError(
            f'Custom arch dict: missing keys {missing}, unknown keys {extra}. '
            f'Required keys are {list(_REQUIRED_KEYS)}; optional keys are '
            f'{list(_OPTIONAL_KEYS)}.')
    arch = {**_OPTIONAL_KEYS, **arch}
    for key in _STAGE_KEYS:
        value = arch[key]
        if not isinstance(value, Sequence) or isinstance(value, str) or \
                not all(_is_int(v) and v > 0 for v in value):
            raise ValueError(f'arch[{key!r}] must be a sequence of positive '
                             f'ints (one per stage), but got {value!r}.')
        arch[key] = tuple(value)
    lengths = {key: len(arch[key]) for key in _STAGE_KEYS}
    if len(set(lengths.values())) != 1 or 0 in lengths.values():
        raise ValueError('The per-stage arch fields must have the same, '
                         f'non-zero length (one entry per stage): {lengths}.')
    for dims, heads in zip(arch['embed_dims'], arch['num_heads']):
        if dims % heads != 0:
            raise ValueError(f'arch: num_heads {arch["num_heads"]} must '
                             f'divide embed_dims {arch["embed_dims"]} stage '
                             'by stage.')
    ratio = arch['ffn_ratio']
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) \
            or ratio <= 0:
        raise ValueError(
            f'arch["ffn_ratio"] must be a positive number, got {ratio!r}.')
    arch['ffn_kernel_sizes'] = tuple(arch['ffn_kernel_sizes'])
    arch['max_delegates'] = per_stage_max_delegates(
        arch['max_delegates'], len(arch['depths']), "arch['max_delegates']")
    return arch


def per_stage_max_delegates(value: Union[None, int, Sequence[Optional[int]]],
                            num_stages: int,
                            name: str = 'max_delegates'
                            ) -> Tuple[Optional[int], ...]:
    """One SAA delegate bound per stage from ``None`` (no bound anywhere),
    one int (the same bound in every stage) or one entry per stage (an int
    or ``None``)."""
    if value is None or _is_int(value):
        value = (value, ) * num_stages
    if not isinstance(value, Sequence) or isinstance(value, str) or \
            len(value) != num_stages:
        raise ValueError(
            f'{name} must be None, a positive int or a sequence of '
            f'{num_stages} entries (one per stage, each a positive int or '
            f'None), but got {value!r}.')
    for entry in value:
        check_max_delegates(entry, name)
    return tuple(value)


def _check_deploy_norm_cfg(norm_cfg: Dict, num_features: int) -> None:
    """Raise ValueError unless ``norm_cfg`` builds a BatchNorm with running
    statistics, the norm that the deploy form folds away."""
    norm = build_norm_layer(norm_cfg, num_features)[1]
    if not (is_batch_norm(norm) and norm.track_running_stats):
        raise ValueError(
            'deploy=True builds the form switch_to_deploy() gives, which '
            'folds every norm but the stage norms into a convolution: '
            'norm_cfg must be a BatchNorm with running statistics (BN, '
            f'SyncBN, MMSyncBN), but got {norm_cfg!r}.')


@register_model
class SAEViT(BaseModule):
    """SAEViT: a lightweight conv + ViT backbone with Sparsely Aggregated
    Attention.

    Submodules (their names are the checkpoint format): ``stem``,
    ``stages.{i}.downsample`` (``i > 0``), ``stages.{i}.blocks.{j}`` and
    ``norm{i}`` for every stage. Each stage ends in its ``norm{i}`` on the
    main path (the PVTv2 layout), so stage ``i`` returns and passes on the
    normalised map, and every checkpoint holds every key, whatever
    ``out_indices`` it was trained with: a classifier's weights fill a
    detector's four-output backbone completely.

    Args:
        arch: A key of :attr:`arch_zoo` (``'t'``/``'tiny'``,
            ``'s'``/``'small'``) or a dict with the keys ``embed_dims``,
            ``depths``, ``num_heads``, ``sample_ratios`` (one entry per
            stage), ``ffn_ratio`` and optionally ``ffn_kernel_sizes`` and
            ``max_delegates`` (default None: no bound).
            Defaults to ``'t'``.
        in_channels: Channels of the input image. Defaults to 3.
        out_indices: Stages whose output is returned; negative indices count
            from the last stage. Stages after the last of them do not run
            and are frozen (their weights stay in the model and its
            checkpoints; DDP needs no ``find_unused_parameters``). Defaults
            to ``-1`` (the last stage).
        frozen_stages: ``-1`` freezes nothing, ``0`` the stem, ``k`` the
            stem, stages ``0..k-1`` and their ``norm{i}``. Frozen modules get
            ``requires_grad=False`` and stay in eval mode across ``train()``.
            Defaults to -1.
        norm_eval: Keep every norm layer in eval mode during training
            (frozen running statistics). Defaults to False.
        with_cp: Checkpoint each block while training (saves memory, costs
            a second forward). Defaults to False.
        drop_path_rate: Stochastic depth rate of the last block; it grows
            linearly from 0 over all blocks. Defaults to 0.
        attn_type: ``'saa'`` (Sparsely Aggregated Attention) or ``'mhsa'``
            (full attention, an ablation). Defaults to ``'saa'``.
        ffn_type: ``'ciffn'`` (Channel-Interactive FFN), or the ablations
            ``'ciffn_no_shuffle'`` (CIFFN without its redistribution) and
            ``'ffn'`` (plain conv FFN). Defaults to ``'ciffn'``.
        use_dwsconv: Add the DWSConv branch to every block. Defaults to True.
        max_delegates: Bound on the delegate tokens of every SAA layer,
            per stage: ``'arch'`` (the arch's ``max_delegates``), ``None``
            (no bound: fixed sample ratios), one int for every stage, or one
            entry per stage (int or ``None``). Above the bound a layer
            samples coarser cells, so its attention cost stops growing with
            the input; at or below it nothing changes (no new weights, the
            same checkpoints). Defaults to ``'arch'``.
        norm_cfg: Config of every norm layer but SAA's recovery norm; a
            channels-first norm of mmcv's ``build_norm_layer`` (``BN``,
            ``SyncBN``, ``MMSyncBN``, ``GN``). Defaults to
            ``dict(type='BN')``.
        recovery_norm_cfg: Norm of SAA's recovered map: None (no norm),
            ``dict(type='LN2d')`` (per pixel over the channels) or another
            channels-first norm. Defaults to None.
        act_cfg: Activation config. Defaults to ``dict(type='GELU')``.
        deploy: Build the inference form directly, the model
            :meth:`switch_to_deploy` gives (same modules, state-dict keys
            and shapes), to load a checkpoint of
            ``tools/model_converters/reparameterize_model.py``; ``norm_cfg``
            must be a BatchNorm's. Defaults to False.
        init_cfg: mmengine init config; with ``type='Pretrained'`` only the
            checkpoint is loaded (after a check that it fits, see
            :meth:`init_weights`), otherwise, and with ``checkpoint=None``,
            our default init runs first. Defaults to None.

    Example:
        >>> import torch
        >>> model = SAEViT('t', out_indices=(0, 1, 2, 3)).eval()
        >>> for out in model(torch.rand(1, 3, 224, 224)):
        ...     print(tuple(out.shape))
        (1, 40, 56, 56)
        (1, 80, 28, 28)
        (1, 192, 14, 14)
        (1, 384, 7, 7)
        >>> model.out_channels, model.out_strides
        ((40, 80, 192, 384), (4, 8, 16, 32))
    """

    arch_zoo = {
        **dict.fromkeys(
            ['t', 'tiny'], {
                'embed_dims': (40, 80, 192, 384),
                'depths': (1, 2, 5, 2),
                'num_heads': (1, 2, 4, 8),
                'sample_ratios': (4, 2, 2, 1),
                'max_delegates': _MAX_DELEGATES,
                'ffn_ratio': 4,
            }),
        **dict.fromkeys(
            ['s', 'small'], {
                'embed_dims': (48, 128, 256, 512),
                'depths': (1, 2, 6, 2),
                'num_heads': (1, 2, 4, 8),
                'sample_ratios': (4, 2, 2, 1),
                'max_delegates': _MAX_DELEGATES,
                'ffn_ratio': 3,
            }),
    }

    def __init__(self,
                 arch: Union[str, Dict] = 't',
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = -1,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 drop_path_rate: float = 0.,
                 attn_type: str = 'saa',
                 ffn_type: str = 'ciffn',
                 use_dwsconv: bool = True,
                 max_delegates: Union[None, int, Sequence[Optional[int]],
                                      str] = 'arch',
                 norm_cfg: Dict = dict(type='BN'),
                 recovery_norm_cfg: Optional[Dict] = None,
                 act_cfg: Dict = dict(type='GELU'),
                 deploy: bool = False,
                 init_cfg: Optional[Union[Dict, Sequence[Dict]]] = None
                 ) -> None:
        super().__init__(init_cfg=init_cfg)
        # arch and argument checks
        if isinstance(arch, str):
            if arch not in self.arch_zoo:
                raise KeyError(f'Unknown arch {arch!r}; choose one of '
                               f'{sorted(self.arch_zoo)} or pass a dict.')
            arch = self.arch_zoo[arch]
        elif not isinstance(arch, dict):
            raise TypeError('arch must be a name in '
                            f'{sorted(self.arch_zoo)} or a dict, but got '
                            f'{type(arch).__name__}.')
        self.arch_settings = _check_arch(arch)
        if max_delegates != 'arch':
            self.arch_settings['max_delegates'] = per_stage_max_delegates(
                max_delegates, len(self.arch_settings['depths']))
        embed_dims = self.arch_settings['embed_dims']
        depths = self.arch_settings['depths']
        self.num_stages = len(depths)
        if not _is_int(in_channels) or in_channels < 1:
            raise ValueError('in_channels must be a positive int, but got '
                             f'{in_channels!r}.')
        check_choice('attn_type', attn_type, ATTN_TYPES)
        check_choice('ffn_type', ffn_type, FFN_TYPES)
        if not 0 <= drop_path_rate < 1:
            raise ValueError('drop_path_rate must be in [0, 1), but got '
                             f'{drop_path_rate!r}.')
        self.in_channels = in_channels
        self.out_indices = normalize_out_indices(out_indices,
                                                 self.num_stages)
        self.frozen_stages = check_frozen_stages(frozen_stages,
                                                 self.num_stages)
        if deploy:
            _check_deploy_norm_cfg(norm_cfg, embed_dims[0])
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        #: in the inference form (:meth:`switch_to_deploy`)
        self.deploy = deploy

        # stem and stages
        self.stem = ConvStem(
            in_channels,
            embed_dims[0],
            norm_cfg=norm_cfg,
            act_cfg=act_cfg,
            deploy=deploy)
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.stages = nn.ModuleList()
        for i, depth in enumerate(depths):
            start = sum(depths[:i])
            self.stages.append(
                SAEViTStage(
                    embed_dims[max(i - 1, 0)],
                    embed_dims[i],
                    depth,
                    self.arch_settings['num_heads'][i],
                    self.arch_settings['sample_ratios'][i],
                    downsample=i > 0,
                    max_delegates=self.arch_settings['max_delegates'][i],
                    drop_paths=rates[start:start + depth],
                    with_cp=with_cp,
                    norm_cfg=norm_cfg,
                    recovery_norm_cfg=recovery_norm_cfg,
                    ffn_ratio=self.arch_settings['ffn_ratio'],
                    ffn_kernel_sizes=self.arch_settings['ffn_kernel_sizes'],
                    attn_type=attn_type,
                    ffn_type=ffn_type,
                    use_dwsconv=use_dwsconv,
                    act_cfg=act_cfg,
                    deploy=deploy))

        # stage norms, on the main path (outputs or not)
        for i in range(self.num_stages):
            self.add_module(f'norm{i}', build_norm2d(norm_cfg, embed_dims[i]))
        self.out_channels: Tuple[int, ...] = tuple(
            embed_dims[i] for i in self.out_indices)
        self.out_strides: Tuple[int, ...] = tuple(
            self.stage_stride(i) for i in self.out_indices)

        self._freeze_stages()
        if deploy:
            self.to(memory_format=torch.channels_last)

    @staticmethod
    def stage_stride(index: int) -> int:
        """Stride of stage ``index`` with respect to the input (4 * 2^i)."""
        return 4 * 2**index

    @property
    def min_input_size(self) -> int:
        """Smallest input side: the stride of the last stage, so that each
        output pixel of every stage covers a full cell of the input."""
        return self.stage_stride(self.num_stages - 1)

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4:
            raise ValueError('SAEViT expects an NCHW tensor (4 dims), but '
                             f'got shape {tuple(x.shape)}.')
        if x.shape[1] != self.in_channels:
            raise ValueError(f'SAEViT was built for in_channels='
                             f'{self.in_channels}, but the input has '
                             f'{x.shape[1]} channels (shape '
                             f'{tuple(x.shape)}).')
        height, width = x.shape[-2:]
        if height < self.min_input_size or width < self.min_input_size:
            raise ValueError(
                f'Input {height}x{width} is smaller than this network can '
                f'reduce: its {self.num_stages} stages need height and width '
                f'>= {self.min_input_size} (the stride of the last stage).')
        if self.training:
            self._check_batch_statistics(x)

    def _check_batch_statistics(self, x: Tensor) -> None:
        """Refuse a batch that leaves a training-mode BatchNorm of the last
        stage one value per channel (torch would fail inside that stage)."""
        last = self.num_used_stages - 1
        stride = self.stage_stride(last)
        height, width = x.shape[-2:]
        if x.shape[0] * -(-height // stride) * -(-width // stride) > 1:
            return
        layers = [
            *self.stages[last].modules(),
            *getattr(self, f'norm{last}').modules()
        ]
        # SyncBN counts the values of every process and checks the sum
        # itself; MMSyncBN of several processes counts them too
        if any(normalizes_with_local_batch(m) for m in layers):
            raise ValueError(
                f'A batch of 1 image of {height}x{width} gives stage {last} '
                'a 1x1 map, so its BatchNorm layers see one value per '
                'channel, which training mode cannot normalise. Use a batch '
                f'of 2 or more, an input larger than {stride}x{stride} '
                f'(height or width > {stride}), norm_eval=True, or a norm '
                "without batch statistics (norm_cfg=dict(type='GN', ...)).")

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """Feature maps of the stages in ``out_indices``.

        Args:
            x: Images, ``(B, in_channels, H, W)`` with ``H, W >=``
                :attr:`min_input_size`; any other size is fine, except one
                image alone at ``H = W =`` :attr:`min_input_size` in training
                mode with BatchNorm: the last stage's 1x1 map would give
                BatchNorm one value per channel (a clear ValueError says so).

        Returns:
            One contiguous NCHW map per entry of ``out_indices`` (in sorted
            order): stage ``i`` has ``embed_dims[i]`` channels and size
            ``ceil(H / s) x ceil(W / s)`` with ``s = 4 * 2^i``.
        """
        self._check_input(x)
        if self.deploy:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.stem(x)
        outs = []
        for i in range(self.num_used_stages):
            x = getattr(self, f'norm{i}')(self.stages[i](x))
            if i in self.out_indices:
                outs.append(x.contiguous())
        return tuple(outs)

    def upgrade_state_dict(self, state_dict: Dict) -> Dict:
        """Rename, in place, the keys of a backbone state dict of an
        earlier layout to this version's
        (:meth:`~..layers.CIFFN.upgrade_state_dict`); returns it."""
        from ..layers import CIFFN
        for name, module in self.named_modules():
            if isinstance(module, CIFFN):
                module.upgrade_state_dict(state_dict, f'{name}.')
        return state_dict

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Switch to the inference form, in place and for good: eval mode,
        every norm but the stage norms ``norm{i}`` folded into the
        convolution next to it, each part's deploy form
        (:meth:`~..layers.SAEViTBlock.switch_to_deploy`,
        :meth:`~..layers.CIFFN.switch_to_deploy`), weights and input in
        channels-last. Every stage switches, also those after the last of
        ``out_indices``, which do not run: the state dict is that of
        ``SAEViT(..., deploy=True)``, whatever ``out_indices``. The outputs
        stay those of the eval-mode model up to float rounding; what each
        step gains on CPU: ``docs/benchmark.md``.

        The parts switch from the outside in (stem, then each stage:
        downsampling, then each block: its pre-norms, then its parts); each
        step is also correct on a part switched before, so the order is not
        what makes it exact.

        Raises:
            RuntimeError: A norm to fold is not a BatchNorm (``GN``, say);
                nothing is changed then.

        Example:
            >>> model = SAEViT('t', out_indices=(0, 1, 2))
            >>> model.switch_to_deploy()
            >>> SAEViT('t', deploy=True).load_state_dict(model.state_dict())
            <All keys matched successfully>
        """
        if self.deploy:
            return
        self.eval()
        check_deployable(
            self,
            kept=[getattr(self, f'norm{i}') for i in range(self.num_stages)])
        self.stem.switch_to_deploy()
        for stage in self.stages:
            stage.switch_to_deploy()
        self.to(memory_format=torch.channels_last)
        self._freeze_stages()  # the new parameters of frozen stages too
        self.deploy = True

    def _load_from_state_dict(self, state_dict: Dict, prefix: str, *args,
                              **kwargs) -> None:
        """Refuse a state dict of the other form (eager or deployed) with a
        message, before mmengine's non-strict loading would only warn."""
        first = f'{prefix}stem.conv1.'
        if any(key.startswith(first) for key in state_dict):
            folded = f'{first}conv.bias' in state_dict
            if folded != isinstance(self.stem.conv1.norm, nn.Identity):
                forms = ('an eager', 'a deployed')
                fix = ('build the model with deploy=True (in a config: '
                       '--cfg-options model.backbone.deploy=True)'
                       if folded else 'build the model with deploy=False, '
                       'or convert the checkpoint with '
                       'tools/model_converters/reparameterize_model.py')
                raise RuntimeError(
                    f'The state dict is of {forms[folded]} SAEViT and the '
                    f'model is {forms[not folded]} one (switch_to_deploy '
                    f'folds the norms into the convolutions): {fix}.')
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def num_used_stages(self) -> int:
        """Stages the forward runs: up to the last one in ``out_indices``."""
        return max(self.out_indices) + 1

    def _frozen_modules(self):
        if self.frozen_stages >= 0:
            yield self.stem
        # stages after the last output never run: frozen, so that DDP does
        # not wait for gradients they cannot get
        for i in [*range(self.frozen_stages),
                  *range(self.num_used_stages, self.num_stages)]:
            yield self.stages[i]
            yield getattr(self, f'norm{i}')

    def _freeze_stages(self) -> None:
        for module in self._frozen_modules():
            freeze_module(module)

    def train(self, mode: bool = True) -> 'SAEViT':
        """Set training mode; frozen stages and (with ``norm_eval``) every
        norm layer stay in eval mode."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            set_norm_eval(self)
        return self

    def init_weights(self) -> None:
        """Initialise the weights.

        With ``init_cfg=dict(type='Pretrained', checkpoint=PATH, ...)`` the
        file is checked first (every key and shape must be this backbone's:
        ``check_pretrained_state_dict`` in
        :mod:`saevit_mm.models.utils.checkpoint`; mmengine itself loads with
        ``strict=False`` and only warns), then loaded: the file is read
        once, by mmengine's ``CheckpointLoader`` (:mod:`saevit_mm`'s
        restricted loader), and nothing else initialises the weights.
        With ``checkpoint=None`` (the det/seg configs' default) nothing is
        loaded: one log line says so and the default init runs. That is:
        1x1 convolutions get ViT's truncated normal (std 0.02), spatial ones
        He's normal over their fan-out, biases zero
        (:func:`~..utils.backbone_utils.init_conv`), norm
        layers weight 1 and bias 0, and the SAA sampling and recovery
        convolutions start as cell average and copy
        (:meth:`SparselyAggregatedAttention.init_sampling`); a non-pretrained
        ``init_cfg`` is applied after that.

        The model is initialised once, as mmengine's ``BaseModule``
        promises: a later call (after a checkpoint was loaded, say) changes
        no weight, and mmengine logs that it was called more than once.

        Raises:
            FileNotFoundError: ``checkpoint`` is a local path with no file.
            ValueError: The file's keys or shapes are not this backbone's.
            AssertionError: No key of the file is under ``prefix`` (as
                mmengine raises it).
        """
        if self.is_init:
            super().init_weights()
            return
        if isinstance(self.init_cfg, dict) and \
                self.init_cfg.get('type') == 'Pretrained':
            path = self.init_cfg.get('checkpoint')
            if path is not None:
                path = str(path)
                if '://' not in path and not osp.isfile(osp.expanduser(path)):
                    raise FileNotFoundError(
                        f'SAEViT init_cfg.checkpoint: {path} is not a file '
                        f'(relative paths start at {os.getcwd()}). Give a '
                        'file of tools/model_converters/cls_to_backbone.py '
                        'or a classification checkpoint of the same arch, '
                        'or checkpoint=None to train from the default init.')
                checkpoint = CheckpointLoader.load_checkpoint(
                    path,
                    map_location=self.init_cfg.get('map_location', 'cpu'),
                    logger='silent')
                prefix = self.init_cfg.get('prefix')
                loaded = self.upgrade_state_dict(
                    pretrained_state_dict(checkpoint, prefix))
                check_pretrained_state_dict(self.state_dict(), checkpoint,
                                            prefix, path, loaded=loaded)
                # load what was read: mmengine's PretrainedInit would read
                # (unpickle) the file a second time
                print_log(
                    f'SAEViT: load {prefix or "the state dict"} from {path}',
                    logger='current')
                self.load_state_dict(loaded)
                pretrained_cfg, self.init_cfg = self.init_cfg, None
                super().init_weights()
                self.init_cfg = pretrained_cfg
                return
            print_log(
                'SAEViT: init_cfg.checkpoint is None, so no pretrained '
                'weights are loaded: the backbone starts from its default '
                'init.',
                logger='current')
            self.init_cfg = None  # nothing for mmengine's PretrainedInit
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                init_conv(module)
            elif isinstance(module, NORM_LAYERS) and getattr(
                    module, 'weight', None) is not None:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for module in self.modules():
            if isinstance(module, SparselyAggregatedAttention):
                module.init_sampling()
        super().init_weights()

    def get_layer_depth(self, param_name: str,
                        prefix: str = '') -> Tuple[int, int]:
        """Layer id of a parameter, for layer-wise learning rate decay.

        Args:
            param_name: Parameter name, e.g. ``'stages.1.blocks.0.ffn...'``.
            prefix: Prefix in front of the backbone's names (such as
                ``'backbone.'``). Defaults to ``''``.

        Returns:
            ``(layer_id, num_layers)``: the stem is 0, block ``j`` of the
            network (counted over all stages, downsampling with the first
            block of its stage) is ``j + 1``, ``norm{i}`` goes with the last
            block of stage ``i``, anything else (non-backbone parameters) is
            ``num_layers - 1``.
        """
        depths = self.arch_settings['depths']
        num_layers = sum(depths) + 2
        if not param_name.startswith(prefix):
            return num_layers - 1, num_layers
        name = param_name[len(prefix):]
        if name.startswith('stem.'):
            return 0, num_layers
        parts = name.split('.')
        if parts[0] == 'stages':
            stage = int(parts[1])
            block = int(parts[3]) if parts[2] == 'blocks' else 0
            return sum(depths[:stage]) + block + 1, num_layers
        if parts[0].startswith('norm') and parts[0][4:].isdigit():
            return sum(depths[:int(parts[0][4:]) + 1]), num_layers
        return num_layers - 1, num_layers
