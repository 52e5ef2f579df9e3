/*
 * fragment FILE PAGES: fill FILE (on a tmpfs) with PAGES 4 KiB pages, then punch out
 * every other page (fallocate FALLOC_FL_PUNCH_HOLE), so that the freed pages are
 * scattered through memory.  Run by the sample guest's /init before the balloon driver
 * loads (make_sample.py, scenario "fragmented"); built statically by make_sample.py.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	static char page[4096];
	long pages, i, punched = 0;
	int fd;

	if (argc != 3 || (pages = atol(argv[2])) <= 0) {
		fprintf(stderr, "usage: fragment FILE PAGES\n");
		return 2;
	}
	fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0) {
		perror(argv[1]);
		return 1;
	}
	for (i = 0; i < pages; i++) {
		memset(page, (int)(i & 0xff) | 1, sizeof(page));
		if (write(fd, page, sizeof(page)) != sizeof(page)) {
			perror("write");
			return 1;
		}
	}
	for (i = 1; i < pages; i += 2) {
		if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, i * 4096L,
			      4096) != 0) {
			perror("fallocate");
			return 1;
		}
		punched++;
	}
	printf("fragment: %ld pages written, %ld punched out\n", pages, punched);
	return 0;
}
