# The recipes a developer runs; .ci/run runs the same checks.
BUF := go tool -modfile=tools.mod buf

.PHONY: build run gen lint test bench ci
build:      ## build starlingd, starling and starling-bench into bin/ (the first build compiles everything: minutes on a fresh machine)
	go build -o bin/ ./cmd/...
run:        ## run a single node on the embedded database in ./data
	go run ./cmd/starlingd
gen:        ## regenerate gen/ and client/ts/gen/ from proto/ (needs node: npm ci installs protoc-gen-es)
	$(BUF) format -w
	@test -x client/ts/node_modules/.bin/protoc-gen-es || command -v npm >/dev/null || \
		{ echo "make gen needs Node.js and npm: protoc-gen-es (TypeScript) is pinned in client/ts/package.json"; exit 1; }
	test -x client/ts/node_modules/.bin/protoc-gen-es || npm ci --prefix client/ts
	$(BUF) generate
lint:       ## formatting, vet, buf lint and breaking
	test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/'))"
	go vet ./...
	$(BUF) lint
	$(BUF) format --diff --exit-code
	$(BUF) breaking --against '.git#ref=HEAD~1'
test:       ## the README's test commands: Go, then the TypeScript client
	go test -race ./...
	npm ci --prefix client/ts && npm test --prefix client/ts
bench:      ## Go benchmarks of the hot paths
	go test -run '^$$' -bench . -benchmem ./...
ci:         ## what CI runs
	bash .ci/run
