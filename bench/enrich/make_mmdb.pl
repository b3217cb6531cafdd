#!/usr/bin/perl
# Builds a MaxMind DB with MaxMind's own writer from the same sources
# `mamori geo build` reads (--rir FILE, --cidr CC:FILE), so the benchmark
# can time libmaxminddb on the same data. Networks are inserted shortest
# first, and in source order at equal length, so the tree answers with the
# longest prefix and then the later source, as mamori's table does.
#   make_mmdb.pl OUT.mmdb [--rir FILE]... [--cidr CC:FILE]...
use strict;
use warnings;
use MaxMind::DB::Writer::Tree;

my $out = shift @ARGV or die "usage: make_mmdb.pl OUT.mmdb [--rir FILE]... [--cidr CC:FILE]...\n";
my @nets;    # [length, order, network text, cc]
my $order = 0;

sub add { my ($net, $cc) = @_; my ($len) = $net =~ m{/(\d+)$}; push @nets, [$len, $order++, $net, $cc]; }

# The CIDR blocks that cover first..last exactly (Net::Works' range_as_subnets
# leaves out private space, which generated data may use).
sub v4_blocks {
	my ($lo, $hi) = @_;
	my @out;
	while ($lo <= $hi) {
		my ($size, $len) = (1, 32);
		while ($len > 0 && $lo % ($size * 2) == 0 && $lo + $size * 2 - 1 <= $hi) {
			$size *= 2;
			$len--;
		}
		push @out, join('.', unpack 'C4', pack 'N', $lo) . "/$len";
		$lo += $size;
	}
	return @out;
}

while (@ARGV) {
	my ($opt, $arg) = splice @ARGV, 0, 2;
	if ($opt eq '--rir') {
		open my $fh, '<', $arg or die "$arg: $!\n";
		while (<$fh>) {
			chomp;
			next if /^#/ || /^\s*$/;
			my @f = split /\|/;
			next if @f < 7 || $f[6] !~ /^(allocated|assigned)$/ || $f[1] !~ /^[A-Z]{2}$/ || $f[1] eq 'ZZ';
			if ($f[2] eq 'ipv4') {
				my $first = unpack 'N', pack 'C4', split /\./, $f[3];
				add($_, $f[1]) for v4_blocks($first, $first + $f[4] - 1);
			} elsif ($f[2] eq 'ipv6') {
				add("$f[3]/$f[4]", $f[1]);
			}
		}
	} elsif ($opt eq '--cidr') {
		my ($cc, $file) = $arg =~ /^([A-Za-z]{2}):(.*)$/ or die "--cidr $arg: not CC:FILE\n";
		open my $fh, '<', $file or die "$file: $!\n";
		while (<$fh>) {
			s/#.*//;
			s/\s+//g;
			add($_, uc $cc) if length;
		}
	} else {
		die "unknown option $opt\n";
	}
}

my $tree = MaxMind::DB::Writer::Tree->new(
	ip_version => 6,
	record_size => 28,
	database_type => 'mamori-bench-Country',
	languages => ['en'],
	description => { en => 'mamori bench: RIR data' },
	map_key_type_callback => sub { { country => 'map', iso_code => 'utf8_string' }->{ $_[0] } },
	remove_reserved_networks => 0,
	alias_ipv6_to_ipv4 => 1,
);
for my $n (sort { $a->[0] <=> $b->[0] || $a->[1] <=> $b->[1] } @nets) {
	$tree->insert_network($n->[2], { country => { iso_code => $n->[3] } });
}
open my $fh, '>:raw', $out or die "$out: $!\n";
$tree->write_tree($fh);
close $fh or die "$out: $!\n";
printf "wrote %s: %d networks\n", $out, scalar @nets;
