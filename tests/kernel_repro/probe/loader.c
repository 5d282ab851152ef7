#include <stdio.h>
#include <signal.h>
#include <unistd.h>
#include <bpf/libbpf.h>
struct ev { unsigned long long ts; unsigned kind, ret; unsigned long long map_seq;
 unsigned map_subflow_seq, map_data_len, map_valid, data_avail, copied_seq, ssn_offset, rcv_nxt, qlen,
 hseq, hlen, hend, hext; unsigned long long e_dseq; unsigned e_sseq, e_len; unsigned long long msk_ack;
 unsigned rmem, rcvbuf, sport, dport; unsigned long long ssk; unsigned xseq, xlen, xext, xsseq, xelen; unsigned long long xdseq; unsigned owned, on_join_list, in_list; };
static volatile int stop;
static void on(int s) { stop = 1; }
static const char *K[] = {"", "READY", "CDA", "RX", "mv<", "RST"};
static int cb(void *c, void *d, size_t n) {
	struct ev *e = d;
	printf("%llu %s ret=%u ssk=%llx %u->%u map(v=%u seq=%llu ssn=%u len=%u) avail=%u cseq_rel=%u rcvnxt_rel=%u q=%u head(seq_rel=%u len=%u end_rel=%u ext=%u %llu/%u/%u) msk_ack=%llu rmem=%u rcvbuf=%u x(seq_rel=%u len=%u ext=%u %llu/%u/%u) owned=%u joinlist=%u inlist=%u\n",
	 e->ts, K[e->kind], e->ret, e->ssk & 0xffffff, e->sport, e->dport, e->map_valid, e->map_seq, e->map_subflow_seq,
	 e->map_data_len, e->data_avail, e->copied_seq - e->ssn_offset, e->rcv_nxt - e->ssn_offset, e->qlen,
	 e->hseq - e->ssn_offset, e->hlen, e->hend - e->ssn_offset, e->hext, e->e_dseq, e->e_sseq, e->e_len,
	 e->msk_ack, e->rmem, e->rcvbuf, e->xseq - e->ssn_offset, e->xlen, e->xext, e->xdseq, e->xsseq, e->xelen, e->owned, e->on_join_list, e->in_list);
	return 0;
}
int main(int argc, char **argv) {
	struct bpf_object *o = bpf_object__open_file(argv[1], NULL);
	if (!o || bpf_object__load(o)) { fprintf(stderr, "load failed\n"); return 1; }
	struct bpf_program *p;
	bpf_object__for_each_program(p, o) if (!bpf_program__attach(p)) { fprintf(stderr, "attach %s failed\n", bpf_program__name(p)); return 1; }
	struct ring_buffer *rb = ring_buffer__new(bpf_map__fd(bpf_object__find_map_by_name(o, "rb")), cb, NULL, NULL);
	signal(SIGINT, on); signal(SIGTERM, on);
	fprintf(stderr, "attached\n");
	setvbuf(stdout, NULL, _IOFBF, 1 << 20);
	while (!stop) ring_buffer__poll(rb, 100);
	ring_buffer__consume(rb); fflush(stdout);
	return 0;
}
