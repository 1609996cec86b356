# Perl's LWP::UserAgent: uploads BODY to URL RUNS times, one after the other; it looks
# for an answer while it sends the body. Prints "<run> <status> <seconds>" per upload and
# writes the answer's body to OUTDIR/<run>, or prints "<run> ERR <what>" (LWP reports
# a connection that failed as a 500 with an "X-Died" or "Client-Warning" header).
#
# Usage: perl upload.pl URL BODY OUTDIR RUNS
use strict;
use warnings;
use LWP::UserAgent;
use Time::HiRes qw(clock_gettime CLOCK_MONOTONIC);

my ($url, $body_path, $out, $runs) = @ARGV;
open(my $f, '<:raw', $body_path) or die "$body_path: $!";
my $body = do { local $/; <$f> };
my $ua = LWP::UserAgent->new(timeout => 30, keep_alive => 0);
$| = 1;
for my $run (0 .. $runs - 1) {
    my $start = clock_gettime(CLOCK_MONOTONIC);
    my $res = $ua->post($url, Content => $body, 'Content-Type' => 'application/octet-stream');
    my $took = clock_gettime(CLOCK_MONOTONIC) - $start;
    my $died = $res->header('X-Died') // $res->header('Client-Warning');
    if ($died) {
        $died =~ s/\n/ /g;
        print "$run ERR $died\n";
        next;
    }
    open(my $o, '>:raw', "$out/$run") or die "$out/$run: $!";
    print $o $res->content;
    close $o;
    print "$run ", $res->code, " $took\n";
}
