"""The external back-ends of `vcmbench.codecs.external`, one module per concern.

Import them from `vcmbench.codecs.external` (configs name `vcmbench.codecs.external.VvencCodec`);
this package's layout is described there. Kept empty so that importing one back-end module does
not import them all.
"""
