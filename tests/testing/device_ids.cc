#include "device_ids.h"

#include <string_view>

namespace homepot {
namespace test {
namespace {

std::string Repeat(std::string_view s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

}  // namespace

const std::vector<std::string>& DeviceIdCorpus() {
  static const std::vector<std::string>* corpus = new std::vector<std::string>{
      "sensor-001",
      "x",
      "a b.c_d:e@f%g",
      "dollar$sign",
      "percent%u",
      "a$",
      "Ger\xC3\xA4t \xE2\x84\x96 7",
      "\xF0\x9F\x94\xA5",
      "\xC2\x85",  // U+0085, a C1 control: allowed
      std::string(128, 'x'),
      Repeat("\xC3\xA9", 64),  // 128 bytes, 64 chars
      "",
      std::string(129, 'x'),
      Repeat("\xC3\xA9", 65),  // 130 bytes
      "a/b",
      "a+b",
      "a#b",
      "#",
      "+",
      "sensor/#",
      "$SYS",
      "$",
      "$a+",
      std::string("a\0b", 3),
      std::string(1, '\0'),
      "a\nb",
      "a\x01",
      "\x1f",
      "a\x7f",
      "\t",
      "\xFF",
      "a\xC3",
      "\xC0\xAF",
      "\xED\xA0\x80",
      "\xF4\x90\x80\x80"};
  return *corpus;
}

}  // namespace test
}  // namespace homepot
