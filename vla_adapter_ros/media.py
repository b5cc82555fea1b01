"""Shareable media of a simulated episode: a labelled video of both cameras and a joint plot.

Video: the agentview and wrist images side by side under a text band with the instruction, the
simulated time and the verdict, as MP4 (H.264, through the ffmpeg binary that ``imageio-ffmpeg``
ships) or as GIF (Pillow). Text is drawn with Pillow; no OpenCV.

Plot: one panel per arm joint plus the gripper, commanded vs measured on every panel, the robot's
position limits (and the limits less the executor's safety margin) as horizontal lines, units on the
axes and a legend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MEDIA_FORMATS = ("mp4", "gif", "none")
VIDEO_MIN_WIDTH = 640  # MP4: the camera images are scaled up (whole factors) until the video is this wide
GIF_MIN_WIDTH = 0  # GIF: the cameras' own size (Pillow's GIF encoder is slow on large frames)
HOLD_LAST_S = 1.0  # the last frame (with the verdict) is held this long
BAND_BG = (24, 24, 28)
SUCCESS_RGB = (60, 200, 80)
FAILURE_RGB = (235, 70, 60)
TEXT_RGB = (240, 240, 240)
DIM_RGB = (170, 170, 175)


# ---------------------------------------------------------------------------------------------- video
def mp4_writer_problem() -> str:
    """'' when MP4 can be written here, else why not (one line)."""
    try:
        import imageio_ffmpeg
    except ImportError as exc:
        return f"{exc} (pip install imageio-ffmpeg)"
    try:
        imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:  # noqa: BLE001 - any failure to find the binary means: no MP4
        return f"imageio-ffmpeg has no ffmpeg binary: {exc}"
    return ""


def resolve_format(requested: str) -> tuple[str, str]:
    """The media format to write and a note for the user ('' if none): mp4 falls back to gif when the
    ffmpeg writer is unavailable."""
    if requested not in MEDIA_FORMATS:
        raise ValueError(f"media format must be one of {', '.join(MEDIA_FORMATS)}, got {requested!r}")
    if requested == "mp4":
        problem = mp4_writer_problem()
        if problem:
            return "gif", f"MP4 writer unavailable ({problem}): writing GIFs instead"
    return requested, ""


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1: a scalable font
    except TypeError:  # pragma: no cover - older Pillow: the small bitmap font
        return ImageFont.load_default()


@dataclass
class EpisodeLabel:
    """What the text band of every frame says."""

    instruction: str
    caption: str = ""  # e.g. "reach_red  seed 1000  episode 0"
    limit_s: float = 0.0  # the episode's time limit (0: not shown)
    success: bool | None = None  # None: no verdict shown


def _fit(draw, text: str, font, width: int) -> str:
    """`text`, shortened with an ellipsis to fit `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def label_frame(agentview: np.ndarray, wrist: np.ndarray, label: EpisodeLabel, t: float,
                min_width: int = VIDEO_MIN_WIDTH) -> np.ndarray:
    """One video frame (H, W, 3) uint8: the text band on top of the two camera images side by side.
    Both dimensions are multiples of 16 (H.264 macro blocks; ffmpeg would otherwise rescale)."""
    from PIL import Image, ImageDraw

    h = max(agentview.shape[0], wrist.shape[0])
    pair = [np.pad(im, ((0, h - im.shape[0]), (0, 0), (0, 0))) for im in (agentview, wrist)]
    cams = np.concatenate(pair, axis=1)
    scale = max(1, math.ceil(min_width / cams.shape[1]))
    cam_img = Image.fromarray(cams).resize((cams.shape[1] * scale, cams.shape[0] * scale), Image.NEAREST)
    width = cam_img.width
    size = max(12, round(width / 48))
    band_h = 3 * size + 12
    total_h = band_h + cam_img.height
    width16, total16 = 16 * math.ceil(width / 16), 16 * math.ceil(total_h / 16)
    band_h += total16 - total_h
    frame = Image.new("RGB", (width16, total16), BAND_BG)
    frame.paste(cam_img, (0, band_h))
    draw = ImageDraw.Draw(frame)
    big, small = _font(size), _font(max(10, round(size * 0.8)))
    pad = size // 2
    draw.text((pad, pad), _fit(draw, f"“{label.instruction}”", big, width16 - 2 * pad), font=big, fill=TEXT_RGB)
    y2 = pad + round(size * 1.5)
    clock = f"t = {t:4.1f} s" + (f" / {label.limit_s:.1f} s" if label.limit_s else "")
    verdict = {True: ("SUCCESS", SUCCESS_RGB), False: ("FAILURE", FAILURE_RGB), None: ("", TEXT_RGB)}[label.success]
    right = width16 - pad
    if verdict[0]:
        right -= draw.textlength(verdict[0], font=big)
        draw.text((right, y2 - (size - small.size) // 2 - 1), verdict[0], font=big, fill=verdict[1])
        right -= size
    right -= draw.textlength(clock, font=small)
    draw.text((right, y2), clock, font=small, fill=TEXT_RGB)
    if label.caption:
        draw.text((pad, y2), _fit(draw, label.caption, small, int(right) - 2 * pad), font=small, fill=DIM_RGB)
    # camera names in the images' top-left corners
    tiny = _font(max(10, round(size * 0.65)))
    for x, name in ((0, "agentview"), (pair[0].shape[1] * scale, "wrist")):
        box = draw.textbbox((x + 4, band_h + 3), name, font=tiny)
        draw.rectangle((box[0] - 3, box[1] - 2, box[2] + 3, box[3] + 2), fill=BAND_BG)
        draw.text((x + 4, band_h + 3), name, font=tiny, fill=TEXT_RGB)
    return np.asarray(frame)


def pair_frames(frames: dict[str, list[np.ndarray]], stamps: dict[str, list[float]] | None = None):
    """[(t, agentview, wrist)] with t from the episode's first agentview frame: each agentview frame
    with the wrist frame nearest in time (by index when the stamps are missing)."""
    views, wrists = frames.get("agentview", []), frames.get("wrist", [])
    if not views or not wrists:
        return []
    t_view = list((stamps or {}).get("agentview", []))
    t_wrist = list((stamps or {}).get("wrist", []))
    if len(t_view) != len(views) or len(t_wrist) != len(wrists):
        count = min(len(views), len(wrists))
        return [(i * 0.1, views[i], wrists[i]) for i in range(count)]  # 10 Hz: the simulation's camera rate
    tw = np.asarray(t_wrist)
    return [(t - t_view[0], view, wrists[int(np.argmin(np.abs(tw - t)))]) for t, view in zip(t_view, views)]


def frame_rate(times: list[float], default: float = 10.0) -> float:
    """Frames per second that plays the episode in (simulated) real time."""
    if len(times) < 2 or times[-1] <= times[0]:
        return default
    return float(min(60.0, max(1.0, (len(times) - 1) / (times[-1] - times[0]))))


def episode_frames(frames, stamps, label: EpisodeLabel, min_width: int = VIDEO_MIN_WIDTH):
    """The labelled frames of an episode (the last one held HOLD_LAST_S) and their frame rate."""
    pairs = pair_frames(frames, stamps)
    if not pairs:
        return [], 0.0
    fps = frame_rate([t for t, _, _ in pairs])
    out = [label_frame(view, wrist, label, t, min_width) for t, view, wrist in pairs]
    out += [out[-1]] * max(0, round(HOLD_LAST_S * fps) - 1)
    return out, fps


def write_mp4(path: Path, frames: list[np.ndarray], fps: float) -> None:
    import imageio_ffmpeg

    h, w = frames[0].shape[:2]
    writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=fps, codec="libx264", pix_fmt_out="yuv420p",
                                         quality=None, output_params=["-crf", "20", "-preset", "veryfast"],
                                         macro_block_size=16, ffmpeg_log_level="error")
    writer.send(None)
    try:
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
    finally:
        writer.close()


def write_gif(path: Path, frames: list[np.ndarray], fps: float) -> None:
    from PIL import Image

    # a palette per frame by fast octree, no dithering: ~15x faster than Pillow's default conversion
    images = [Image.fromarray(f).quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
              for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)


def write_episode_video(stem: Path, frames, stamps, label: EpisodeLabel, fmt: str) -> tuple[Path | None, str]:
    """Write `stem`.mp4 or `stem`.gif; returns (the file or None if there were no frames, a note: '' or
    why an MP4 became a GIF)."""
    if fmt == "none":
        return None, ""
    images, fps = episode_frames(frames, stamps, label, VIDEO_MIN_WIDTH if fmt == "mp4" else GIF_MIN_WIDTH)
    if not images:
        return None, ""
    if fmt == "mp4":
        path = stem.with_suffix(".mp4")
        try:
            write_mp4(path, images, fps)
            return path, ""
        except Exception as exc:  # noqa: BLE001 - a broken ffmpeg must not cost the episode's media
            path.unlink(missing_ok=True)
            note = f"MP4 writer failed ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}): wrote a GIF"
    else:
        note = ""
    path = stem.with_suffix(".gif")
    write_gif(path, images, fps)
    return path, note


# ----------------------------------------------------------------------------------------------- plot
@dataclass
class JointLimits:
    """Position limits for the plot: hardware q_min / q_max (rad) and the executor's margin (rad)."""

    q_min: np.ndarray
    q_max: np.ndarray
    margin: np.ndarray
    name: str = ""

    @classmethod
    def load(cls, robot: str) -> JointLimits | None:
        """From the robot limits file the executor uses (``fr3_sim``, ``fr3``, a YAML path); None if it
        cannot be read."""
        try:
            from vla_adapter_ros.control.limits import load_robot_limits

            lim = load_robot_limits(robot)
        except Exception:  # noqa: BLE001 - the plot goes without limit lines
            return None
        margin = np.broadcast_to(np.asarray(lim.position_margin, float), np.shape(lim.q_min)).copy()
        return cls(np.asarray(lim.q_min, float), np.asarray(lim.q_max, float), margin, robot)


GRIPPER_WIDTH_MAX_M = 0.08
NEAR_LIMIT_RAD = 0.3  # a limit line is brought into view when the trace comes this close to it


def _view(values: list[np.ndarray], limits: list[float], near: float) -> tuple[float, float]:
    data = np.concatenate([np.ravel(v) for v in values if len(v)])
    lo, hi = float(data.min()), float(data.max())
    for lim in limits:
        if lo - near <= lim <= hi + near:
            lo, hi = min(lo, lim), max(hi, lim)
    pad = max(0.05 * (hi - lo), 1e-3)
    return lo - pad, hi + pad


def joint_figure(measured, commanded, names: list[str], title: str, limits: JointLimits | None = None,
                 gripper_measured=(), gripper_commanded=()):
    """The matplotlib figure of an episode's joints (not saved; call savefig or write_plot).

    measured / commanded: [(t, q (7,))] (rad, t in simulated s); gripper_*: [(t, width m)]. One panel
    per joint and one for the gripper width, each with commanded (dashed) and measured (solid); the
    limits are drawn as horizontal lines and written in the panel; a line enters the view when the trace
    comes within NEAR_LIMIT_RAD of it (at full scale a small motion would be a flat line)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    t0 = min([t for t, _ in measured[:1]] + [t for t, _ in gripper_measured[:1]] or [0.0])

    def series(samples, width):
        t = np.array([s[0] - t0 for s in samples]) if len(samples) else np.zeros(0)
        v = np.array([np.ravel(s[1]) for s in samples]).reshape(len(samples), width) if len(samples) else \
            np.zeros((0, width))
        return t, v

    tm, qm = series(measured, len(names))
    tc, qc = series(commanded, len(names))
    tgm, gm = series(gripper_measured, 1)
    tgc, gc = series(gripper_commanded, 1)
    panels = len(names) + 1
    fig = Figure(figsize=(9, 1.55 * panels + 0.8))
    axes = fig.subplots(panels, 1, sharex=True)
    measured_style = dict(color="tab:blue", lw=1.3)
    commanded_style = dict(color="tab:orange", lw=1.1, ls="--")
    hard_style = dict(color="tab:red", lw=1.0, ls="-", alpha=0.8)
    margin_style = dict(color="tab:red", lw=0.9, ls=":", alpha=0.8)
    for j, ax in enumerate(axes[:-1]):
        ax.plot(tm, qm[:, j], **measured_style)
        if len(tc):
            ax.plot(tc, qc[:, j], **commanded_style)
        bounds = []
        if limits is not None and j < len(limits.q_min):
            lo, hi, m = limits.q_min[j], limits.q_max[j], limits.margin[j]
            for y in (lo, hi):
                ax.axhline(y, **hard_style)
            for y in (lo + m, hi - m):
                ax.axhline(y, **margin_style)
            bounds = [lo, hi, lo + m, hi - m]
            ax.text(0.995, 0.95, f"limits {lo:+.2f} .. {hi:+.2f} rad, margin {m:.2f}", transform=ax.transAxes,
                    fontsize=7, va="top", ha="right", color="tab:red",
                    bbox=dict(facecolor="white", edgecolor="none", alpha=0.75, pad=1.5))
        if len(qm) or len(qc):
            ax.set_ylim(*_view([qm[:, j], qc[:, j]], bounds, NEAR_LIMIT_RAD))
        ax.set_ylabel(f"{names[j].split('_')[-1]} [rad]", fontsize=8)
    ax = axes[-1]
    ax.plot(tgm, gm[:, 0], **measured_style)
    if len(tgc) and len(tgm) and tgm[-1] > tgc[-1]:  # commands are events: the last one holds to the end
        tgc, gc = np.append(tgc, tgm[-1]), np.vstack([gc, gc[-1:]])
    if len(tgc):
        ax.plot(tgc, gc[:, 0], drawstyle="steps-post", **commanded_style)
    for y in (0.0, GRIPPER_WIDTH_MAX_M):
        ax.axhline(y, **hard_style)
    ax.set_ylim(-0.006, GRIPPER_WIDTH_MAX_M + 0.006)
    ax.set_ylabel("gripper\nwidth [m]", fontsize=8)
    ax.set_xlabel("simulated time [s]")
    for a in axes:
        a.tick_params(labelsize=7)
        a.grid(alpha=0.25)
    handles = [Line2D([], [], **measured_style), Line2D([], [], **commanded_style),
               Line2D([], [], **hard_style), Line2D([], [], **margin_style)]
    labels = ["measured", "commanded", f"limit{f' ({limits.name})' if limits else ''}", "limit less safety margin"]
    fig.legend(handles, labels, loc="upper center", ncol=4, fontsize=8, frameon=False, bbox_to_anchor=(0.5, 0.985))
    fig.suptitle(title, fontsize=10, y=0.998)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return fig


def write_plot(path: Path, measured, commanded, names, title: str, limits: JointLimits | None = None,
               gripper_measured=(), gripper_commanded=()) -> bool:
    """Save the joint figure as a PNG; False (nothing written) when no joint state was recorded."""
    if not measured:
        return False
    fig = joint_figure(measured, commanded, names, title, limits, gripper_measured, gripper_commanded)
    fig.savefig(path, dpi=90)
    return True
