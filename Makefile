# Convenience targets; the scripts do the work and are what README and CI call.
.PHONY: run test build bench format clean
run:
	./scripts/run
test:
	./scripts/test
build:
	./scripts/build release
bench:
	./bench/seat_page.sh
format:
	clang-format -i $$(git ls-files 'src/*.c' 'src/*.h' 'tests/*.c' 'tools/*.c')
clean:
	rm -rf build
