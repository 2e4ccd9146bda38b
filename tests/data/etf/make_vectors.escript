#!/usr/bin/env escript
%% Writes ETF test vectors made by Erlang's own term_to_binary, for
%% tests/test_etf.py.  Run from anywhere (needs Debian's erlang-base):
%%
%%     escript tests/data/etf/make_vectors.escript tests/data/etf
%%
%% For every named term below it writes
%%   NAME.v0.etf  term_to_binary(T, [{minor_version, 0}])  old string FLOAT_EXT, Latin-1 atoms
%%   NAME.v1.etf  term_to_binary(T, [{minor_version, 1}])  OTP <= 25 default: NEW_FLOAT, Latin-1 atoms
%%   NAME.v2.etf  term_to_binary(T, [{minor_version, 2}])  OTP 26+ default: UTF-8 atoms always
%%   NAME.z.etf   term_to_binary(T, [compressed, {minor_version, 2}])
%% and one line of expected.txt:  NAME <tab> LITERAL_STR <tab> LITERAL_INT
%% where each literal is a Python literal (for ast.literal_eval) of what
%% fastshard._etf.decode must return with big_ints_as_str True / False.
%% The printer below is an independent statement of the decoding rules:
%% nil/true/false -> None/True/False, atoms and binaries -> str, integers
%% outside the 32-bit range (the ones Erlang writes as SMALL_BIG/LARGE_BIG)
%% -> str or int, lists and Erlang strings -> list, tuples -> tuple, maps -> dict.
-mode(compile).

main([Dir]) ->
    {ok, Out} = file:open(filename:join(Dir, "expected.txt"), [write]),
    io:format(Out, "# made by make_vectors.escript on OTP ~s~n", [erlang:system_info(otp_release)]),
    lists:foreach(
      fun({Name, Term}) ->
              write(Dir, Name, "v0", term_to_binary(Term, [{minor_version, 0}])),
              write(Dir, Name, "v1", term_to_binary(Term, [{minor_version, 1}])),
              write(Dir, Name, "v2", term_to_binary(Term, [{minor_version, 2}])),
              write(Dir, Name, "z", term_to_binary(Term, [compressed, {minor_version, 2}])),
              io:format(Out, "~s\t~s\t~s~n", [Name, py(Term, str), py(Term, int)])
      end, terms()),
    ok = file:close(Out);
main(_) ->
    io:format(standard_error, "usage: make_vectors.escript OUTPUT_DIR~n", []),
    halt(2).

write(Dir, Name, Variant, Bin) ->
    ok = file:write_file(filename:join(Dir, Name ++ "." ++ Variant ++ ".etf"), Bin).

terms() ->
    Snowflake = 175928847299117063,
    Long = list_to_binary(lists:duplicate(1000, "discord ")),
    [{"int_small_0", 0},
     {"int_small_255", 255},
     {"int_256", 256},
     {"int_minus_1", -1},
     {"int32_max", 2147483647},
     {"int32_min", -2147483648},
     {"big_int32_max_plus_1", 2147483648},
     {"big_int32_min_minus_1", -2147483649},
     {"big_snowflake", Snowflake},
     {"big_u64_max", 18446744073709551615},
     {"big_u64_max_plus_1", 18446744073709551616},
     {"big_neg_u64", -18446744073709551615},
     {"big_2_pow_2040", 1 bsl 2040},            % 256 bytes: LARGE_BIG
     {"big_neg_2_pow_2039", -(1 bsl 2039)},     % 255 bytes: largest SMALL_BIG
     {"float_zero", 0.0},
     {"float_one_half", 1.5},
     {"float_neg", -2.5},
     {"float_pi", math:pi()},
     {"float_huge", 1.0e300},
     {"float_tiny", 5.0e-324},
     {"float_third", 1 / 3},
     {"atom_nil", nil},
     {"atom_true", true},
     {"atom_false", false},
     {"atom_plain", 'MESSAGE_CREATE'},
     {"atom_empty", ''},
     {"atom_undefined", undefined},
     {"atom_latin1", list_to_atom([$c, $a, $f, 233])},
     {"atom_unicode", list_to_atom([16#30C9, 16#30E9, 16#30B4, 16#30F3])},
     {"atom_255_bytes_utf8", list_to_atom(lists:duplicate(85, 16#30C9))},
     {"atom_long_utf8", list_to_atom(lists:duplicate(200, 16#30C9))},
     {"binary_empty", <<>>},
     {"binary_ascii", <<"hello world">>},
     {"binary_utf8", <<"h", 16#C3, 16#A9, "llo ", 16#F0, 16#9F, 16#98, 16#80>>},
     {"binary_long", Long},
     {"string_ext", "abc"},
     {"string_ext_bytes", [0, 1, 127, 128, 255]},
     {"list_ints_not_string", [1, 2, 300]},
     {"list_mixed", [1, <<"two">>, three, 4.0, [5], {6}]},
     {"list_nested", [[[[[]]]], [[]]]},
     {"nil", []},
     {"tuple_empty", {}},
     {"tuple_pair", {ok, <<"x">>}},
     {"tuple_large", list_to_tuple(lists:seq(1, 300))},
     {"map_empty", #{}},
     {"map_binary_keys", #{<<"a">> => 1, <<"b">> => <<"two">>}},
     {"map_atom_keys", #{op => 0, d => nil, s => 1, t => 'READY'}},
     {"map_mixed_keys", #{1 => one, {2, 3} => two, <<"k">> => [], k => #{}}},
     {"map_many_keys", maps:from_list([{list_to_atom("key" ++ integer_to_list(I)), I * 1000} || I <- lists:seq(1, 40)])},
     {"map_nested", #{a => #{b => #{c => [#{d => 1}]}}}},
     {"discord_message_create",
      #{op => 0, s => 42, t => 'MESSAGE_CREATE',
        d => #{id => Snowflake + 1, channel_id => Snowflake + 2, guild_id => Snowflake + 3,
               content => <<"hello ", 16#F0, 16#9F, 16#91, 16#8B>>, tts => false,
               mention_everyone => false, pinned => false, type => 0, flags => 0,
               timestamp => <<"2026-11-28T09:00:00.000000+00:00">>, edited_timestamp => nil,
               author => #{id => Snowflake + 4, username => <<"someone">>, avatar => nil,
                           discriminator => <<"0">>, public_flags => 64, global_name => <<"Some One">>},
               member => #{roles => [Snowflake + 5, Snowflake + 6], joined_at => <<"2020-01-01T00:00:00+00:00">>,
                           deaf => false, mute => false, nick => nil},
               mentions => [], mention_roles => [], attachments => [], embeds => [],
               components => [], nonce => <<"1234567890">>}}},
     {"discord_guild_create_compressible",
      #{op => 0, s => 3, t => 'GUILD_CREATE',
        d => #{id => Snowflake, name => <<"a guild">>, member_count => 100,
               members => [#{user => #{id => Snowflake + I, username => <<"user">>, bot => false},
                             roles => [Snowflake + 1, Snowflake + 2], deaf => false, mute => false,
                             joined_at => <<"2021-05-05T10:00:00.000000+00:00">>}
                           || I <- lists:seq(1, 100)]}}}].

%% ---- Python literal printer --------------------------------------------

py(nil, _) -> "None";
py(true, _) -> "True";
py(false, _) -> "False";
py(A, _) when is_atom(A) -> pystr(atom_to_list(A));
py(I, Mode) when is_integer(I), (I < -2147483648 orelse I > 2147483647), Mode =:= str ->
    "'" ++ integer_to_list(I) ++ "'";
py(I, _) when is_integer(I) -> integer_to_list(I);
py(F, _) when is_float(F) -> float_to_list(F, [short]);
py(B, _) when is_binary(B) -> pystr(unicode:characters_to_list(B, utf8));
py(L, Mode) when is_list(L) -> "[" ++ join([py(X, Mode) || X <- L]) ++ "]";
py(T, Mode) when is_tuple(T), tuple_size(T) =:= 1 -> "(" ++ py(element(1, T), Mode) ++ ",)";
py(T, Mode) when is_tuple(T) -> "(" ++ join([py(X, Mode) || X <- tuple_to_list(T)]) ++ ")";
py(M, Mode) when is_map(M) ->
    "{" ++ join([py(K, Mode) ++ ": " ++ py(V, Mode) || {K, V} <- maps:to_list(M)]) ++ "}".

join([]) -> "";
join([H | T]) -> H ++ lists:append([", " ++ X || X <- T]).

%% Letters, digits and spaces as they are, every other code point escaped.
pystr(Chars) ->
    "'" ++ lists:append([pychar(C) || C <- Chars]) ++ "'".

pychar(C) when C >= $a, C =< $z; C >= $A, C =< $Z; C >= $0, C =< $9; C =:= $\s; C =:= $_ -> [C];
pychar(C) -> io_lib:format("\\U~8.16.0b", [C]).
