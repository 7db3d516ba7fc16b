// Package readmetest holds the test that runs the README: it builds
// starlingd, the CLI and grpcurl, then types the README's walkthrough
// (the blocks marked <!-- readme-test: terminal NAME -->) into one shell
// per terminal, as a newcomer would, and checks every output the README
// shows in its "# → …" comments. It is a package of its own because it
// tests no package: it tests what a reader of README.md meets. The rules
// of the markup are in readme_test.go.
package readmetest
