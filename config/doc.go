// Package config loads berth's template resources from the three file
// formats berth accepts, all into the one Template type:
//
//   - berth.toml: [store], [runtime], top-level wait and prefix, and
//     [[template]] resources (Load);
//   - confd's conf.d/*.toml resources with templates/ beside them
//     (LoadConfd), run unmodified;
//   - docker-gen's [[config]] TOML files (LoadDockerGen).
//
// Decoding is strict in every format: an unknown key, a value of the wrong
// type or an invalid value is an error that names the file and line.
// Validate rejects two templates writing the same destination. The package
// does no I/O beyond reading the files it is given and has no state.
package config
