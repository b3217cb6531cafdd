/*
 * Internals of the query language shared by its lexer, parser, AST
 * helpers and printer: tokens, the per-field grammar table that both the
 * parser and mm_query_check read (so they cannot disagree), and the arena
 * behind struct mm_query.
 */
#ifndef MAMORI_QUERY_INT_H
#define MAMORI_QUERY_INT_H

#include "mamori/query.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum qtok_kind {
	QT_END,
	QT_WORD,   /* keyword, number, address, prefix, name */
	QT_LPAREN,
	QT_RPAREN,
	QT_LBRACK,
	QT_RBRACK,
	QT_COMMA,
	QT_NOT,    /* ! */
	QT_AND,    /* && */
	QT_OR,     /* || */
	QT_CMP,    /* = == != < <= > >=; op says which */
	QT_BAD,    /* a character the language has no use for */
};

struct qtok {
	enum qtok_kind kind;
	enum mm_qop op;
	const char *text;
	size_t len;
	unsigned column; /* 1-based byte offset */
};

/* The lexer holds only a position, so saving a copy is a full lookahead. */
struct qlex {
	const char *text;
	size_t len, pos;
};

void qlex_init(struct qlex *lx, const char *text, size_t len);
void qlex_next(struct qlex *lx, struct qtok *tok);
bool qtok_is(const struct qtok *tok, const char *word);

/* How a field's constants are written and which operators they take. */
enum qvalue_kind {
	QV_NONE,     /* no constant: ip4, ip6 (the family is the keyword) */
	QV_ADDR,
	QV_PREFIX,
	QV_COUNTRY,
	QV_PROTO,
	QV_END,
	QV_FLAGS,
	QV_NUM,      /* plain decimal up to max */
	QV_COUNT,    /* decimal with k/M/G/T (×1000) suffixes */
	QV_DURATION, /* decimal with ns..w units, bare = seconds */
};

#define QDIR_BIT(d) (1u << (d))

struct qfield_info {
	const char *name;   /* canonical keyword */
	const char *alias;  /* accepted too, or NULL */
	const char *what;   /* its constant, for "expected ..." messages */
	enum qvalue_kind kind;
	uint64_t max;       /* QV_NUM */
	unsigned dirs;      /* QDIR_BIT of every direction the field accepts */
	enum mm_qdir bare;  /* direction when none is written */
};

const struct qfield_info *qfield_info(enum mm_qfield field);
/* The field named by a keyword (not ip4/ip6), or NULL. */
const struct qfield_info *qfield_lookup(const struct qtok *tok, enum mm_qfield *field);
bool qvalue_kind_ordered(enum qvalue_kind kind);
bool qop_allowed(const struct qfield_info *info, enum mm_qop op);
/* Whether the printer writes child in parentheses: precedence needs them there. */
bool qnode_needs_parens(const struct mm_qnode *parent, const struct mm_qnode *child);

/* TCP flag letters in nfdump's order; bit i of the flags byte is letter i. */
extern const char qflag_letters[8];

#endif
