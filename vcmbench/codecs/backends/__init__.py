"""External back-ends: real video/image codecs run as processes on frames of samples.

A back-end takes a stack of gray frames, `(N, H, W)` unsigned samples of 8 or 10 bits,
runs a real encoder on them and returns the real bitstream bytes; `decode` runs the
matching decoder and returns the frames. Feature codecs (anchor, packing), the image anchor
and the joint codec build on it.

A back-end is a part injected into the codec that uses it: one class here, named by a nested
yaml node with `_partial_: true` (`backend: {_target_: vcmbench.codecs.backends.ffmpeg_codecs.VvencBackend,
_partial_: true, preset: faster}`), which the codec calls with its name and setting prefix so that
errors name `codec.NAME.backend.KEY`. There is no registry of names: the class is the name.

=========================================  =======================================  ==========================  =========
class                                      encoder (decoder)                        stream format (counted)     knobs
=========================================  =======================================  ==========================  =========
`ffmpeg_codecs.VvencBackend`               ffmpeg libvvenc (ffmpeg's native VVC)    raw Annex-B `-f vvc`        qp
`vtm.VtmBackend`                           VTM EncoderApp (DecoderApp), user paths  raw Annex-B .bin            qp
`ffmpeg_codecs.X265Backend`                ffmpeg libx265 (ffmpeg hevc)             raw Annex-B `-f hevc`       qp, crf, lossless
`x265_cli.X265CliBackend`                  x265 CLI, e.g. Debian's (ffmpeg hevc)    raw Annex-B                 qp, crf, lossless
`ffmpeg_codecs.AomBackend`                 ffmpeg libaom-av1 (libdav1d/libaom)      low-overhead OBU `-f obu`   crf, lossless
`ffmpeg_codecs.SvtAv1Backend`              ffmpeg libsvtav1 (libdav1d/libaom)       low-overhead OBU `-f obu`   qp, crf
`ffmpeg_codecs.Ffv1Backend`                ffmpeg ffv1 (ffv1)                       NUT container `-f nut`      lossless
`ffmpeg_codecs.PngBackend`                 ffmpeg png (png)                         PNG files, concatenated     lossless
`ffmpeg_codecs.JpegBackend`                ffmpeg mjpeg (mjpeg)                     JPEG files, concatenated    q
=========================================  =======================================  ==========================  =========

Each class carries its `family` and `family_id` (the 4-bit id frame payloads write: 1 VVC, 2 HEVC,
3 AV1, 4 FFV1, 5 PNG, 6 JPEG; back-ends of one family decode each other's streams).

Every byte the encoder writes is returned and counted; nothing is stripped. Formats
were picked for the smallest honest overhead: elementary streams where ffmpeg can demux
them (VVC, HEVC, AV1 OBUs), NUT for FFV1 (no elementary-stream muxer exists; NUT adds a
few dozen bytes per stream and a few per frame).

Sample handling: libvvenc and libsvtav1 take yuv420p10le only, so a gray frame goes in
Y with flat chroma (mid-grey, which codes to almost nothing); x265, libaom, FFV1 and PNG
take gray/gray10le directly (4:0:0). 8-bit samples given to a 10-bit-only encoder are
shifted up by 2 bits and rounded back on decode. JPEG is 8-bit only (yuvj420p, flat
chroma). Frames are padded by edge replication to what the encoder accepts (even sizes
for 4:2:0; at least 32 pixels a side for libvvenc, 16 for libx265, 64 for the x265 CLI)
and cropped back after decoding; the decoder derives the padded size from the frame size.
x265 in crf mode runs without cutree (x265 3.x corrupts its heap with cutree on small
4:0:0 frames). Colour pictures (the image anchor): ffmpeg's filter graphs convert them, and
the ffmpeg back-ends and VTM (`codes_pictures`) code the result.

VVC settings: `-qpa 0` (no perceptual QP adaptation), no access-unit delimiters and
parameter sets written once (`AccessUnitDelimiter=0:RewriteParamSets=0`); `intra=True`
gives vvenc's all-intra configuration (`-g 1`), `intra=False` random access with one
intra frame at the start.

Every call is timed (`last_encode_s`, `last_decode_s`, `encode_s`/`decode_s` totals)
and bounded by `timeout_s`; a missing binary raises MissingDependencyError naming the
config key that sets it, and a failing or timed-out process raises ExternalCodecError
with the codec, the command and what it printed.

Where each concern lives:

- `process.py`: running a process (`run_process`, `Finished`, `DEFAULT_TIMEOUT_S`), streaming a
  decoder's output (`stream_frames`), the one-line error tails;
- `gop.py`: prediction structures (`Gop`, `ALL_INTRA`, `ONE_INTRA`, `as_gop`);
- `codec.py`: the `ExternalBackend` interface and its checks, `FrameSink` and the file-spooling
  `SpoolSink`;
- `sinks.py`: `PipeSink` and `FileFedSink`, which feed a running ffmpeg encoder;
- `ffmpeg.py`: finding ffmpeg (`resolve_ffmpeg`, `PIP_HINT`) and `FfmpegBackend`, the shared driver;
- `ffmpeg_codecs.py`: `VvencBackend`, `X265Backend`, `AomBackend`, `SvtAv1Backend`, `Ffv1Backend`,
  `PngBackend`, `JpegBackend`;
- `x265_cli.py`: `X265CliBackend`; `vtm.py`: `VtmBackend` (and its colour-picture sink).

Kept free of imports, so that importing one back-end module does not import them all.
"""
