package sector

import "bytes"

// Banner returns the banner the programs print above the message: lines of
// code page 437 double-line box characters, each ending in CR LF. The EFI
// applications map it to Unicode.
func Banner() []byte { return bytes.Clone(banner) }

// Defaults returns the options with every default filled in: Then, the
// message saying what happens next, and the serial marker. Programs other
// than the boot sector (the EFI applications) print the same texts.
func (o Options) Defaults() Options {
	serial := o.serial()
	o.Message, o.Serial, o.Then = o.message(), &serial, o.then()
	return o
}
