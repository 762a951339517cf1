"""`icsd compare`: run several strategies and K over sample images and show the results side by side.

A shell package (it uses the core only through `icsd.core`'s public names): `options` parses the lists,
`measure` is what workers run (compress + quality numbers + previews), `run` drives the pool, `page` writes
the HTML report, `plot` draws bytes against PSNR, `sheet` the contact-sheet PNG.
"""
