/*
 * Lexer of the query language: splits filter text into words (keywords,
 * numbers, addresses and prefixes all share one word class, since an IPv6
 * address and a keyword cannot be told apart by their first character) and
 * punctuation, skipping blanks and # comments. It never fails: a byte with
 * no use becomes a QT_BAD token, and the parser reports it with its column.
 */
#include "query_int.h"

#include <string.h>
#include <strings.h>

void qlex_init(struct qlex *lx, const char *text, size_t len)
{
	lx->text = text;
	lx->len = len;
	lx->pos = 0;
}

static bool is_word_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
	       c == ':' || c == '/' || c == '-' || c == '_';
}

static bool is_blank(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static void skip_blanks_and_comments(struct qlex *lx)
{
	while (lx->pos < lx->len) {
		unsigned char c = (unsigned char)lx->text[lx->pos];
		if (is_blank(c)) {
			lx->pos++;
		} else if (c == '#') {
			while (lx->pos < lx->len && lx->text[lx->pos] != '\n')
				lx->pos++;
		} else {
			break;
		}
	}
}

static char peek_at(const struct qlex *lx, size_t off)
{
	return lx->pos + off < lx->len ? lx->text[lx->pos + off] : '\0';
}

/* Punctuation of one or two characters; QT_BAD for a lone '&' or '|'. */
static void lex_punct(struct qlex *lx, struct qtok *tok)
{
	char c = peek_at(lx, 0), d = peek_at(lx, 1);

	tok->len = 1;
	switch (c) {
	case '(': tok->kind = QT_LPAREN; break;
	case ')': tok->kind = QT_RPAREN; break;
	case '[': tok->kind = QT_LBRACK; break;
	case ']': tok->kind = QT_RBRACK; break;
	case ',': tok->kind = QT_COMMA; break;
	case '&':
	case '|':
		tok->kind = d == c ? (c == '&' ? QT_AND : QT_OR) : QT_BAD;
		tok->len = d == c ? 2 : 1;
		break;
	case '!':
		tok->kind = d == '=' ? QT_CMP : QT_NOT;
		tok->op = MM_QO_NE;
		tok->len = d == '=' ? 2 : 1;
		break;
	case '=':
		tok->kind = QT_CMP;
		tok->op = MM_QO_EQ;
		tok->len = d == '=' ? 2 : 1;
		break;
	case '<':
	case '>':
		tok->kind = QT_CMP;
		tok->op = c == '<' ? (d == '=' ? MM_QO_LE : MM_QO_LT) : (d == '=' ? MM_QO_GE : MM_QO_GT);
		tok->len = d == '=' ? 2 : 1;
		break;
	default: tok->kind = QT_BAD; break;
	}
}

void qlex_next(struct qlex *lx, struct qtok *tok)
{
	skip_blanks_and_comments(lx);
	tok->text = lx->text + lx->pos;
	tok->column = (unsigned)lx->pos + 1;
	tok->op = MM_QO_EQ;
	tok->len = 0;
	if (lx->pos >= lx->len) {
		tok->kind = QT_END;
		return;
	}
	if (is_word_char((unsigned char)lx->text[lx->pos])) {
		tok->kind = QT_WORD;
		while (lx->pos + tok->len < lx->len && is_word_char((unsigned char)lx->text[lx->pos + tok->len]))
			tok->len++;
	} else {
		lex_punct(lx, tok);
	}
	lx->pos += tok->len;
}

bool qtok_is(const struct qtok *tok, const char *word)
{
	return tok->kind == QT_WORD && strlen(word) == tok->len && strncasecmp(tok->text, word, tok->len) == 0;
}
